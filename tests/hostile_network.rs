//! Hostile network (issue 8, item 4): the real `feedpub serve` binary on loopback under
//! HTTP/2 rapid reset and header floods on the gRPC port, garbage and truncated prefaces,
//! hundreds of half-open connections and more than the connection caps on both ports,
//! slowloris heads, slow request bodies and slow readers on the HTTP port. Every attack
//! is bounded (a fixed count and size, loopback only). During each, a well-behaved client
//! keeps calling gRPC (ListSections, GetArticle) and fetching feeds over HTTP, and every
//! call must succeed; afterwards the process is alive, its peak resident memory stayed
//! under a bound over the baseline, and its open file descriptors come back to the
//! baseline.
//!
//! `FEEDPUB_HOSTILE_SCALE=N` multiplies the counts of the HTTP/2 attacks, the garbage, the
//! slow bodies and the slowloris connections (these up to 300, under the test's
//! connection caps); the
//! half-open and over-the-cap counts are fixed by the caps, and the slow readers stay 50
//! (each holds megabytes of kernel socket buffers).

#[path = "hostile_network/frames.rs"]
mod frames;

mod common;

use common::binary::{Running, ServeOptions, ServeProcess};
use common::{DEADLINE, Tokens, authed};
use feedpub::config::{EMBEDDED_CONFIG, Limits, Overrides, Settings};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{self, GetArticleRequest, ListSectionsRequest, PublishArticleRequest};
use frames::Seen;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// The server's `[limits]` for this test: short timeouts so attacks end quickly, caps the
/// test can reach. Everything else is the sample configuration.
const TEST_LIMITS: &str = "
[limits]
header_timeout_seconds = 2
idle_timeout_seconds = 4
send_timeout_seconds = 3
max_http_connections = 400
max_grpc_connections = 400
# Every attacker and the probe connect from this machine's one address: its share of
# each port's connections is the whole cap here.
max_http_connections_per_peer = 400
max_grpc_connections_per_peer = 400
";

/// Peak resident memory may grow this much over the baseline during any attack.
const RSS_BOUND_KB: u64 = 100 * 1024;
/// Open descriptors may stay this many over the baseline once attackers are gone.
const FD_SLACK: usize = 8;
/// The large feed slow readers ask for.
const LARGE_FEED: &str = "/feeds/features/rss.xml";

fn scale() -> usize {
    std::env::var("FEEDPUB_HOSTILE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------------------
// The limit on open files: the default caps need more than a soft limit of 1,024.

/// The soft and hard "Max open files" of process `pid`, from `/proc/<pid>/limits`
/// (`None`: unlimited).
fn open_file_limits(pid: u32) -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .expect("/proc/<pid>/limits has Max open files");
    let mut values = line
        .split_whitespace()
        .map(|v| (v != "unlimited").then(|| v.parse::<u64>().unwrap()));
    (values.next().unwrap(), values.next().unwrap())
}

#[test]
fn the_server_raises_a_low_soft_limit_on_open_files_to_the_hard_one() {
    // The server starts at 256 under this machine's hard limit (a finite one: Linux
    // reports none unlimited for open files, and the test sets one if it did).
    let (_, hard) = open_file_limits(std::process::id());
    let start = hard.unwrap_or(1 << 20);
    assert!(
        start > 256,
        "this machine's hard limit on open files is {start}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(ServeOptions {
        open_files: Some((256, start)),
        ..ServeOptions::new(&dir.path().join("data"), &dir.path().join("feeds"))
    });
    server.wait_ready();
    assert_eq!(
        open_file_limits(server.pid()),
        (Some(start), Some(start)),
        "{}",
        server.log()
    );
    assert!(
        server
            .find_in_log(|l| l.contains("open-file limit raised").then_some(()))
            .is_some(),
        "{}",
        server.log()
    );
    assert!(
        server
            .find_in_log(|l| l.contains("max_http_connections").then_some(()))
            .is_none(),
        "{}",
        server.log()
    );
}

#[test]
fn a_hard_limit_on_open_files_below_the_caps_is_warned_of_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(ServeOptions {
        open_files: Some((400, 512)),
        ..ServeOptions::new(&dir.path().join("data"), &dir.path().join("feeds"))
    });
    // It still serves: the caps are what it cannot honour.
    server.wait_ready();
    assert_eq!(open_file_limits(server.pid()), (Some(512), Some(512)));
    let warning = server
        .find_in_log(|l| l.contains("max_http_connections").then(|| l.to_owned()))
        .unwrap_or_else(|| panic!("no warning:\n{}", server.log()));
    assert!(
        warning.contains("WARN") && warning.contains("needed=2048") && warning.contains("512"),
        "{warning}"
    );
}

/// Out of descriptors, accepting fails until one is freed: each port logs it and pauses
/// before trying again, instead of spinning on the error (tonic asks for the gRPC port's
/// next connection at once).
#[test]
fn out_of_descriptors_the_listeners_pause_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(ServeOptions {
        open_files: Some((200, 200)),
        ..ServeOptions::new(&dir.path().join("data"), &dir.path().join("feeds"))
    });
    let running = server.wait_ready();
    // Silent HTTP connections, each held until the header timeout (10 s): past the
    // limit, the rest wait in the backlog.
    let held: Vec<_> = (0..250)
        .map(|_| std::net::TcpStream::connect(running.http).unwrap())
        .collect();
    server.wait_for_log("the HTTP port out of descriptors", |l| {
        l.contains("cannot accept an HTTP connection").then_some(())
    });
    let _waiting = std::net::TcpStream::connect(running.grpc).unwrap();
    server.wait_for_log("the gRPC port out of descriptors", |l| {
        l.contains("cannot accept a gRPC connection").then_some(())
    });
    // Two seconds of the server's CPU meanwhile: a spinning accept loop takes a core.
    let ticks = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields.iter().sum::<u64>()
    };
    // SAFETY: sysconf only reads a system constant.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let before = ticks(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks(server.pid()) - before;
    assert!(
        used < per_second / 2,
        "the server used {used} ticks of CPU ({per_second} a second) in 2 s while out of descriptors"
    );
    drop(held);
}

// ---------------------------------------------------------------------------------------
// The process: memory and descriptors from /proc.

struct Process {
    pid: u32,
}

impl Process {
    fn status_kb(&self, field: &str) -> u64 {
        feedpub::heap::status_kib(self.pid, field)
            .unwrap_or_else(|| panic!("{field} in /proc/{}/status", self.pid))
    }

    fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    /// Peak resident memory since the last [`Process::reset_peak`].
    fn peak_kb(&self) -> u64 {
        self.status_kb("VmHWM")
    }

    /// Resets VmHWM to the current RSS (`clear_refs` 5, Linux 4.0+).
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .expect("the peak RSS can be reset");
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("the server process is alive")
            .count()
    }

    /// Waits until the descriptors are back near `baseline`; returns the count.
    async fn fds_back_to(&self, baseline: usize, what: &str) -> usize {
        let start = Instant::now();
        loop {
            let now = self.fds();
            if now <= baseline + FD_SLACK {
                return now;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: {now} descriptors open, baseline {baseline}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The well-behaved client, calling all along.

#[derive(Default)]
struct ProbeCounts {
    grpc_ok: AtomicU64,
    http_ok: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

struct Probe {
    counts: Arc<ProbeCounts>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Calls ListSections and GetArticle over one gRPC channel and fetches a feed and
    /// `/healthz` over one kept-alive HTTP connection, in turn, until stopped.
    fn start(running: Running, tokens: Tokens, article_id: String) -> Self {
        let counts = Arc::new(ProbeCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut grpc = PublisherServiceClient::new(running.channel().await);
            // A connection idle for a second is dropped by the probe, well before the
            // server's idle timeout (4 s) could close it as the probe reuses it.
            let http = reqwest::Client::builder()
                .timeout(DEADLINE)
                .pool_max_idle_per_host(1)
                .pool_idle_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let mut turn = 0_u64;
            while !s.load(Ordering::Relaxed) {
                turn += 1;
                let grpc_result = if turn.is_multiple_of(2) {
                    call_list_sections(&mut grpc, &tokens).await
                } else {
                    call_get_article(&mut grpc, &tokens, &article_id).await
                };
                match grpc_result {
                    Ok(()) => c.grpc_ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        c.failures.lock().unwrap().push(format!("gRPC: {e}"));
                        0
                    }
                };
                let path = if turn.is_multiple_of(2) {
                    "/feeds/politics/atom.xml"
                } else {
                    "/healthz"
                };
                match http_get(&http, &running.url(path)).await {
                    Ok(()) => c.http_ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        c.failures.lock().unwrap().push(format!("GET {path}: {e}"));
                        0
                    }
                };
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { counts, stop, task }
    }

    fn marks(&self) -> (u64, u64) {
        (
            self.counts.grpc_ok.load(Ordering::Relaxed),
            self.counts.http_ok.load(Ordering::Relaxed),
        )
    }

    fn failures(&self) -> Vec<String> {
        self.counts.failures.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the probe does not panic");
    }
}

async fn call_list_sections(
    grpc: &mut PublisherServiceClient<Channel>,
    tokens: &Tokens,
) -> Result<(), String> {
    let call = grpc.list_sections(authed(&tokens.newsroom, ListSectionsRequest {}));
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(r)) if r.get_ref().sections.len() == 5 => Ok(()),
        Ok(Ok(r)) => Err(format!("{} sections", r.get_ref().sections.len())),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("no answer".into()),
    }
}

async fn call_get_article(
    grpc: &mut PublisherServiceClient<Channel>,
    tokens: &Tokens,
    id: &str,
) -> Result<(), String> {
    let request = GetArticleRequest {
        id: id.into(),
        ..Default::default()
    };
    let call = grpc.get_article(authed(&tokens.newsroom, request));
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(r)) if r.get_ref().id == id => Ok(()),
        Ok(Ok(r)) => Err(format!("got {}", r.get_ref().id)),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("no answer".into()),
    }
}

async fn http_get(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = http.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{e:?}"))?;
    if status == 200 && !body.is_empty() {
        Ok(())
    } else {
        Err(format!("{status}, {} bytes", body.len()))
    }
}

// ---------------------------------------------------------------------------------------
// The harness around each attack.

struct Harness {
    server: ServeProcess,
    running: Running,
    process: Process,
    probe: Probe,
    limits: Limits,
    http: reqwest::Client,
    baseline_kb: u64,
    baseline_fds: usize,
    report: Vec<String>,
}

impl Harness {
    /// Runs `attack` while the probe calls; checks that every probe call succeeded, some
    /// during the attack, that the server is alive, its peak RSS within the bound, and its
    /// descriptors back to the baseline after the attack.
    async fn attack<F: std::future::Future<Output = String>>(&mut self, name: &str, attack: F) {
        self.process.reset_peak();
        let (grpc_before, http_before) = self.probe.marks();
        let started = Instant::now();
        let summary = attack.await;
        let took = started.elapsed();
        // The probe must have been answered while the attack was on (or right after, for
        // attacks shorter than one probe round).
        wait_for(&format!("{name}: the probe is answered"), || {
            let (g, h) = self.probe.marks();
            g > grpc_before && h > http_before
        })
        .await;
        let (grpc_after, http_after) = self.probe.marks();
        assert!(
            self.probe.failures().is_empty(),
            "{name}: the well-behaved client failed: {:?}",
            self.probe.failures()
        );
        assert!(
            self.server.is_running(),
            "{name}: the server died:\n{}",
            self.server.log()
        );
        let peak = self.process.peak_kb();
        let growth = peak.saturating_sub(self.baseline_kb);
        assert!(
            growth < RSS_BOUND_KB,
            "{name}: peak RSS {peak} kB, {growth} kB over the baseline {} kB",
            self.baseline_kb
        );
        let fds = self.process.fds_back_to(self.baseline_fds, name).await;
        let line = format!(
            "{name}: {summary}; {:.1} s; probe answered {} gRPC + {} HTTP, none failed; peak RSS +{} MB; fds {} (baseline {})",
            took.as_secs_f64(),
            grpc_after - grpc_before,
            http_after - http_before,
            growth / 1024,
            fds,
            self.baseline_fds
        );
        println!("{line}");
        self.report.push(line);
    }

    /// The value of one Prometheus series in `/metrics`, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        common::metric(&self.http, &self.running.url("/metrics"), series).await
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server closes `stream` (end of stream or reset) within `within`, reading
/// and discarding whatever it sends first.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Deterministic bytes (xorshift), so a failing run can be replayed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Set-up.

async fn publish(running: &Running, tokens: &Tokens) -> String {
    let mut client = running.client().await;
    let mut first = None;
    // Eight long features: the features feed becomes a few megabytes, too large for the
    // socket buffers, for the slow readers.
    let paragraph = "乡村振兴是一项长期的系统工程，需要久久为功、持续发力。".repeat(200);
    for i in 0..8 {
        let article = proto::Article {
            id: format!("long-{i}"),
            section: "features".into(),
            title: format!("长篇综述之{i}"),
            authors: vec!["陈淑兰".into()],
            content_text: format!("{paragraph}\n\n").repeat(30),
            publish_time: Some(common::ts(1_686_092_400 + i)),
            ..Default::default()
        };
        let request = PublishArticleRequest {
            article: Some(article),
            ..Default::default()
        };
        let stored = client
            .publish_article(authed(&tokens.newsroom, request))
            .await
            .expect("the long feature publishes")
            .into_inner();
        first.get_or_insert(stored.article.expect("stored").id);
    }
    let brief = common::brief("brief-1", "研讨会召开");
    client
        .publish_article(authed(
            &tokens.newsroom,
            PublishArticleRequest {
                article: Some(brief),
                ..Default::default()
            },
        ))
        .await
        .expect("the brief publishes");
    first.expect("one article")
}

/// The size of the large feed once all eight articles are in it.
async fn large_feed_len(http: &reqwest::Client, running: &Running) -> usize {
    let start = Instant::now();
    loop {
        let body = http
            .get(running.url(LARGE_FEED))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if String::from_utf8_lossy(&body).contains("长篇综述之7") {
            return body.len();
        }
        assert!(
            start.elapsed() < DEADLINE * 4,
            "the long features never appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stays_up_answers_and_stays_bounded_under_hostile_clients() {
    // The attacks hold about a thousand sockets on this side too: the test raises its own
    // soft limit on open files as the server does (1,024 is a common default).
    let embedded = Settings::parse("embedded", EMBEDDED_CONFIG, Overrides::default()).unwrap();
    feedpub::connections::raise_open_file_limit(&embedded.limits);
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!("{EMBEDDED_CONFIG}\n{TEST_LIMITS}");
    let config = dir.path().join("hostile.toml");
    std::fs::write(&config, &config_text).unwrap();
    let limits = Settings::parse("hostile.toml", &config_text, Overrides::default())
        .expect("the test configuration loads")
        .limits;
    let data_dir = dir.path().join("data");
    let tokens = common::add_partners(&data_dir).await;
    let mut server = ServeProcess::start(ServeOptions {
        config: Some(&config),
        ..ServeOptions::new(&data_dir, &dir.path().join("feeds"))
    });
    let running = server.wait_ready();
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let article_id = publish(&running, &tokens).await;
    let large = large_feed_len(&http, &running).await;
    println!(
        "limits: header {:?}, idle {:?}, send {:?}, {} HTTP and {} gRPC connections, {} streams per connection, header lists {} B, {} pending-accept resets, {} local error resets; large feed {large} B",
        limits.header_timeout,
        limits.idle_timeout,
        limits.send_timeout,
        limits.max_http_connections,
        limits.max_grpc_connections,
        limits.max_concurrent_streams,
        feedpub::grpc::MAX_HEADER_LIST_BYTES,
        feedpub::grpc::MAX_PENDING_ACCEPT_RESET_STREAMS,
        feedpub::grpc::MAX_LOCAL_ERROR_RESET_STREAMS,
    );
    assert!(large > 2 << 20, "the large feed is {large} bytes");

    let process = Process { pid: server.pid() };
    let probe = Probe::start(running, tokens.clone(), article_id);
    // Warm up: the probe's connections are open, the feeds served once.
    wait_for("the probe starts", || {
        let (g, h) = probe.marks();
        g >= 4 && h >= 4
    })
    .await;
    assert!(probe.failures().is_empty(), "{:?}", probe.failures());
    // The long features are served before they are compressed and written: the baseline
    // is taken once that is done, not while it runs.
    let metrics_url = running.url("/metrics");
    let start = Instant::now();
    while common::metric(&http, &metrics_url, "feedpub_feeds_settled").await != 1.0 {
        assert!(start.elapsed() < DEADLINE * 4, "the feeds never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let baseline_kb = process.rss_kb();
    let baseline_fds = process.fds();
    println!("baseline: RSS {baseline_kb} kB, {baseline_fds} descriptors");
    let mut h = Harness {
        server,
        running,
        process,
        probe,
        limits,
        http,
        baseline_kb,
        baseline_fds,
        report: Vec::new(),
    };
    let n = scale();

    let r = h.running;
    h.attack("rapid reset", rapid_reset(r.grpc, 4 * n, 10_000))
        .await;
    h.attack(
        "rapid reset on the HTTP port (h2c)",
        rapid_reset(r.http, 2 * n, 10_000),
    )
    .await;
    h.attack("server-provoked resets", provoked_resets(r, 4 * n, 2_000))
        .await;
    h.attack("header floods", header_floods(r, 10 * n)).await;
    h.attack(
        "garbage and truncated prefaces",
        garbage_and_prefaces(r, 20 * n),
    )
    .await;
    // Under the caps (400): the caps themselves come next.
    let half_open = 300;
    h.attack("half-open connections", half_open_connections(r, half_open))
        .await;
    let refused_http = h
        .metric("feedpub_connections_refused_total{listener=\"http\"}")
        .await;
    let refused_grpc = h
        .metric("feedpub_connections_refused_total{listener=\"grpc\"}")
        .await;
    assert_eq!(
        (refused_http, refused_grpc),
        (0.0, 0.0),
        "{half_open} half-open connections per port stay under the caps"
    );
    // At least `over` over each cap, of 150 opened over it: those accepted first may meet
    // the header timeout before the last are accepted.
    let over = 100;
    let (http_cap, grpc_cap) = (h.limits.max_http_connections, h.limits.max_grpc_connections);
    h.attack(
        "more connections than the caps",
        over_the_caps(r, http_cap + over + 50, grpc_cap + over + 50),
    )
    .await;
    let refused_http = h
        .metric("feedpub_connections_refused_total{listener=\"http\"}")
        .await;
    let refused_grpc = h
        .metric("feedpub_connections_refused_total{listener=\"grpc\"}")
        .await;
    let evicted = h
        .metric("feedpub_connections_evicted_total{listener=\"grpc\"}")
        .await;
    let evicted_http = h
        .metric("feedpub_connections_evicted_total{listener=\"http\"}")
        .await;
    // The probe holds a connection on each port, so at least `over` are refused or take
    // the place of another: on the gRPC port the oldest that has made no authenticated
    // call, on the HTTP port the one idle longest (a silent one waits for its first
    // request). The probe's connections are never evicted: its gRPC channel has made
    // calls, and its HTTP connection, handed to hyper by its /healthz requests, has had
    // requests under way.
    assert!(
        refused_http + evicted_http >= over as f64 && refused_grpc + evicted >= over as f64,
        "refused: {refused_http} HTTP, {refused_grpc} gRPC; evicted {evicted_http} HTTP, {evicted} gRPC"
    );
    h.report.push(format!(
        "connections over the caps: {refused_http} HTTP refused, {evicted_http} HTTP evicted, {refused_grpc} gRPC refused, {evicted} gRPC evicted"
    ));
    h.attack(
        "idle gRPC channels filling the cap",
        idle_channels(r, grpc_cap, tokens.clone()),
    )
    .await;
    let evicted = h
        .metric("feedpub_connections_evicted_total{listener=\"grpc\"}")
        .await
        - evicted;
    // One for the last idle channel (the probe holds the place it lacked), one for the
    // partner's new connection; the probe's connection, which has made authenticated
    // calls, is never evicted (it would be the oldest, and its reconnection a third).
    assert_eq!(evicted, 2.0, "idle channels evicted");
    let header_timeouts_before = h
        .metric("feedpub_connection_timeouts_total{listener=\"http\",reason=\"header\"}")
        .await;
    h.attack("slowloris", slowloris(r, (100 * n).min(300)))
        .await;
    let header_timeouts = h
        .metric("feedpub_connection_timeouts_total{listener=\"http\",reason=\"header\"}")
        .await
        - header_timeouts_before;
    h.attack("slow bodies", slow_bodies(r, 20 * n)).await;
    let readers = 50;
    h.attack(
        "slow readers",
        slow_readers(r, readers, large, h.process.pid),
    )
    .await;
    let send_timeouts = h
        .metric("feedpub_connection_timeouts_total{listener=\"http\",reason=\"send\"}")
        .await;
    assert!(
        send_timeouts >= readers as f64,
        "{send_timeouts} send timeouts for {readers} slow readers"
    );
    h.report.push(format!(
        "timeouts counted: {header_timeouts} HTTP header (slowloris), {send_timeouts} HTTP send (slow readers)"
    ));

    let Harness {
        mut server,
        probe,
        report,
        ..
    } = h;
    probe.stop().await;
    assert!(server.is_running(), "{}", server.log());
    println!("\nsummary:\n{}", report.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The attacks. Each returns a one-line summary of what the server did.

/// Opens `streams` streams on each of `connections` connections to `addr` (the gRPC port,
/// or the HTTP port's HTTP/2 without TLS), each HEADERS followed at once by RST_STREAM
/// (CVE-2023-44487). Every connection must be closed by the server with a GOAWAY.
async fn rapid_reset(addr: SocketAddr, connections: usize, streams: u32) -> String {
    let reset = |id| frames::rst_stream(id, frames::CANCEL);
    stream_flood(
        addr,
        connections,
        streams,
        reset,
        "streams opened and reset",
    )
    .await
}

/// Provokes the server into resetting streams itself ("MadeYouReset", CVE-2025-8671):
/// each stream is a request followed by a WINDOW_UPDATE that overflows the stream's flow
/// control window, a stream error the server answers with RST_STREAM.
async fn provoked_resets(running: Running, connections: usize, streams: u32) -> String {
    let overflow = |id| frames::window_update(id, 0x7fff_ffff);
    stream_flood(
        running.grpc,
        connections,
        streams,
        overflow,
        "streams provoked",
    )
    .await
}

/// Opens `streams` streams on each of `connections` connections to `addr`, each a gRPC
/// request's HEADERS followed at once by the frame `then` makes for its stream id, 100
/// streams per write. Every connection must be closed by the server with a GOAWAY.
async fn stream_flood(
    addr: SocketAddr,
    connections: usize,
    streams: u32,
    then: fn(u32) -> Vec<u8>,
    what: &str,
) -> String {
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (read, mut write) = stream.into_split();
            let reader = tokio::spawn(frames::read_until_closed(read, Duration::from_secs(10)));
            let block = frames::grpc_request("/grpc.health.v1.Health/Check");
            let _ = write.write_all(&frames::client_start()).await;
            let mut sent = 0_u32;
            for batch in 0..streams / 100 {
                let mut out = Vec::new();
                for i in 0..100 {
                    let id = 2 * (batch * 100 + i) + 1;
                    out.extend(frames::frame(
                        frames::HEADERS,
                        frames::END_HEADERS,
                        id,
                        &block,
                    ));
                    out.extend(then(id));
                }
                if write.write_all(&out).await.is_err() {
                    break;
                }
                sent += 100;
            }
            let seen = reader.await.unwrap();
            (sent, seen)
        });
    }
    summarise_h2(tasks, what, |seen| seen.closed && seen.goaway.is_some()).await
}

async fn summarise_h2(
    mut tasks: JoinSet<(u32, Seen)>,
    what: &str,
    must: impl Fn(&Seen) -> bool,
) -> String {
    let (mut sent, mut goaways, mut closed, mut codes) = (0, 0, 0, Vec::new());
    let mut last_stream = 0;
    while let Some(done) = tasks.join_next().await {
        let (n, seen) = done.unwrap();
        assert!(
            must(&seen),
            "a connection was not ended by the server: {seen:?}"
        );
        sent += n;
        goaways += usize::from(seen.goaway.is_some());
        closed += usize::from(seen.closed);
        codes.extend(seen.goaway.map(|(code, _)| code));
        last_stream = last_stream.max(seen.goaway.map_or(0, |(_, last)| last));
    }
    codes.sort_unstable();
    codes.dedup();
    format!(
        "{sent} {what}; {closed} connections closed by the server, {goaways} with GOAWAY (codes {codes:x?}, last stream id at most {last_stream})"
    )
}

/// Header floods on the gRPC port, `each` connections of every kind: a 1 MiB header list
/// in CONTINUATION frames; 5,000 small fields; an endless CONTINUATION run (100,000
/// frames, never END_HEADERS); an HPACK bomb (one 4,000-byte field in the dynamic table,
/// then referenced 10,000 times, 40 MB once decoded). None may get an answer that is not a
/// refusal, and every connection must be reset or closed by the server.
async fn header_floods(running: Running, each: usize) -> String {
    let big_value = vec![b'a'; 16 * 1024];
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("1 MiB header list", {
            let mut block = frames::grpc_request("/grpc.health.v1.Health/Check");
            for i in 0..64 {
                frames::literal(&mut block, format!("x-big-{i}").as_bytes(), &big_value);
            }
            split_into_continuations(1, &block, 16 * 1024)
        }),
        ("5,000 small fields", {
            let mut block = frames::grpc_request("/grpc.health.v1.Health/Check");
            for i in 0..5_000 {
                frames::literal(&mut block, format!("x-{i}").as_bytes(), b"v");
            }
            split_into_continuations(1, &block, 16 * 1024)
        }),
        ("CONTINUATION flood", {
            let block = frames::grpc_request("/grpc.health.v1.Health/Check");
            let mut out = frames::frame(frames::HEADERS, 0, 1, &block);
            let mut filler = Vec::new();
            frames::literal(&mut filler, b"x", b"y");
            for _ in 0..100_000 {
                out.extend(frames::frame(frames::CONTINUATION, 0, 1, &filler));
            }
            out
        }),
        ("HPACK bomb", {
            let mut first = frames::grpc_request("/grpc.health.v1.Health/Check");
            frames::literal_indexing(&mut first, b"x-bomb", &[b'b'; 4000]);
            let mut out = frames::frame(
                frames::HEADERS,
                frames::END_HEADERS | frames::END_STREAM,
                1,
                &first,
            );
            let mut bomb = frames::grpc_request("/grpc.health.v1.Health/Check");
            for _ in 0..10_000 {
                frames::indexed(&mut bomb, 62);
            }
            out.extend(split_into_continuations(3, &bomb, 16 * 1024));
            out
        }),
    ];
    let mut lines = Vec::new();
    for (name, attack) in kinds {
        let attack = Arc::new(attack);
        let mut tasks = JoinSet::new();
        for _ in 0..each {
            let attack = attack.clone();
            tasks.spawn(async move {
                let stream = TcpStream::connect(running.grpc).await.unwrap();
                let (read, mut write) = stream.into_split();
                let reader = tokio::spawn(frames::read_until_closed(read, Duration::from_secs(5)));
                let mut out = frames::client_start();
                out.extend_from_slice(&attack);
                let _ = write.write_all(&out).await;
                let seen = reader.await.unwrap();
                drop(write);
                (0, seen)
            });
        }
        let (mut closed, mut resets, mut answers, mut goaways) = (0, 0, 0, Vec::new());
        while let Some(done) = tasks.join_next().await {
            let (_, seen) = done.unwrap();
            // Refused: the stream reset, a GOAWAY, or the connection closed. An answer
            // (HEADERS) may come for the first, harmless request of the HPACK bomb only.
            let limit = usize::from(name == "HPACK bomb");
            assert!(
                seen.headers <= limit * 2,
                "{name}: the flooded request was answered: {seen:?}"
            );
            assert!(
                seen.closed || seen.resets > 0 || seen.goaway.is_some(),
                "{name}: neither refused nor closed: {seen:?}"
            );
            closed += usize::from(seen.closed);
            resets += seen.resets;
            answers += seen.headers;
            goaways.extend(seen.goaway.map(|(code, _)| code));
        }
        goaways.sort_unstable();
        goaways.dedup();
        lines.push(format!(
            "{name} ×{each}: {resets} streams reset, {closed} connections closed, GOAWAY codes {goaways:x?}, {answers} answer heads"
        ));
    }
    // And over HTTP/1 on the HTTP port: a head of 20,000 fields (about 200 KB), which the
    // fast path hands to hyper for being too long.
    let mut head = b"GET /feeds/all/rss.xml HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..20_000 {
        head.extend_from_slice(format!("X-Flood-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let head = Arc::new(head);
    let mut tasks = JoinSet::new();
    for _ in 0..each {
        let head = head.clone();
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(running.http).await.unwrap();
            let _ = stream.write_all(&head).await;
            let mut answer = vec![0; 64];
            let n = tokio::time::timeout(DEADLINE, stream.read(&mut answer))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            let status = String::from_utf8_lossy(&answer[..n])
                .chars()
                .take(12)
                .collect::<String>();
            (status, closed_by_server(&mut stream, DEADLINE).await)
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, closed) = done.unwrap();
        assert!(closed, "HTTP/1 header flood: the connection stayed open");
        assert!(
            !status.contains(" 200"),
            "HTTP/1 header flood answered {status}"
        );
        statuses.push(status);
    }
    statuses.sort();
    statuses.dedup();
    lines.push(format!(
        "HTTP/1 head of 20,000 fields ×{each}: all closed, answered {statuses:?}"
    ));
    lines.join("; ")
}

/// A header block as HEADERS (with END_STREAM) and CONTINUATION frames of `chunk` bytes.
fn split_into_continuations(stream: u32, block: &[u8], chunk: usize) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(chunk).collect();
    let mut out = Vec::new();
    for (i, part) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let end = if last { frames::END_HEADERS } else { 0 };
        if i == 0 {
            out.extend(frames::frame(
                frames::HEADERS,
                end | frames::END_STREAM,
                stream,
                part,
            ));
        } else {
            out.extend(frames::frame(frames::CONTINUATION, end, stream, part));
        }
    }
    out
}

/// On both ports, `count` connections each of: 64 KiB of seeded random bytes; the HTTP/2
/// preface cut short (16 of 24 bytes) and held. Every connection must be closed by the
/// server (an HTTP garbage request may get a 400 first).
async fn garbage_and_prefaces(running: Running, count: usize) -> String {
    let mut tasks = JoinSet::new();
    for i in 0..count {
        for (port, addr) in [("http", running.http), ("grpc", running.grpc)] {
            tasks.spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let _ = stream.write_all(&garbage(i as u64 + 1, 64 * 1024)).await;
                (
                    port,
                    "garbage",
                    closed_by_server(&mut stream, DEADLINE).await,
                )
            });
            tasks.spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let _ = stream.write_all(&frames::PREFACE[..16]).await;
                (
                    port,
                    "truncated preface",
                    closed_by_server(&mut stream, DEADLINE).await,
                )
            });
        }
    }
    let mut closed = 0;
    while let Some(done) = tasks.join_next().await {
        let (port, kind, was_closed) = done.unwrap();
        assert!(
            was_closed,
            "{kind} on the {port} port: the connection stayed open"
        );
        closed += 1;
    }
    format!(
        "{closed} connections ({count} garbage and {count} truncated prefaces per port), all closed by the server"
    )
}

/// `count` connections per port holding still, half sending nothing and half part of a
/// request (HTTP: a head without its end; gRPC: the preface and part of the SETTINGS frame
/// header that must follow it). The server must close every one.
async fn half_open_connections(running: Running, count: usize) -> String {
    let mut held = Vec::new();
    for i in 0..count {
        for addr in [running.http, running.grpc] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 1 {
                let part: &[u8] = if addr == running.http {
                    b"GET /feeds/all/rss.xml HTTP/1.1\r\nHost: x\r\n"
                } else {
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"
                };
                stream.write_all(part).await.unwrap();
            }
            held.push((addr == running.http, i % 2 == 1, stream));
        }
    }
    let mut tasks = JoinSet::new();
    for (http, partial, mut stream) in held {
        tasks.spawn(async move { (http, partial, closed_by_server(&mut stream, DEADLINE).await) });
    }
    let mut closed = 0;
    while let Some(done) = tasks.join_next().await {
        let (http, partial, was_closed) = done.unwrap();
        assert!(
            was_closed,
            "half-open (HTTP {http}, partial {partial}) not closed"
        );
        closed += 1;
    }
    format!("{count} per port, half silent and half partial: all {closed} closed by the server")
}

/// `http` and `grpc` idle connections at once, more than each cap; the excess are closed
/// at once (on the gRPC port, the oldest give way to them), and the probe (already
/// connected) keeps being answered.
async fn over_the_caps(running: Running, http: usize, grpc: usize) -> String {
    let mut closed = 0;
    // One port after the other: the cap is only exceeded if the server accepts the
    // connections faster than the header timeout closes the first of them, which the other
    // port's connections, handled beside them, slowed on a loaded machine (once, 39 of the
    // 101 over the gRPC cap evicted, 57 of the HTTP cap's another time).
    for (addr, count) in [(running.http, http), (running.grpc, grpc)] {
        // Fifty at a time: opened one after another on a loaded machine, the first could
        // be closed by the header timeout before the last were open, never over the cap.
        let mut held = Vec::new();
        let mut left = count;
        while left > 0 {
            let mut batch = JoinSet::new();
            for _ in 0..left.min(50) {
                batch.spawn(TcpStream::connect(addr));
                left -= 1;
            }
            while let Some(opened) = batch.join_next().await {
                held.push(opened.unwrap().unwrap());
            }
        }
        // Held until the header timeouts close them.
        let mut tasks = JoinSet::new();
        for mut stream in held {
            tasks.spawn(async move { closed_by_server(&mut stream, DEADLINE).await });
        }
        while let Some(done) = tasks.join_next().await {
            assert!(
                done.unwrap(),
                "a connection over or under the cap stayed open"
            );
            closed += 1;
        }
    }
    format!("{http} HTTP and {grpc} gRPC idle connections, all {closed} closed by the server")
}

/// `count` gRPC connections, as many as the cap, each sending the HTTP/2 preface and
/// SETTINGS and then nothing: idle channels, which no timeout closes, and which no partner
/// opened. A partner connecting afterwards must still be answered: each connection over
/// the cap takes the place of the oldest idle one, which the server closes.
async fn idle_channels(running: Running, count: usize, tokens: Tokens) -> String {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(running.grpc).await.unwrap();
        stream.write_all(&frames::client_start()).await.unwrap();
        held.push(stream);
    }
    // Past the header timeout: none of them is closed for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let partner = Channel::from_shared(format!("http://{}", running.grpc))
        .unwrap()
        .connect_timeout(DEADLINE)
        .connect()
        .await
        .expect("a partner connects with the cap full of idle channels");
    let mut partner = PublisherServiceClient::new(partner);
    call_list_sections(&mut partner, &tokens)
        .await
        .expect("a partner's call with the cap full of idle channels");
    // The oldest two gave way: to the last idle channel (the probe holds a place) and to
    // the partner; the newest keeps its place.
    for oldest in &mut held[..2] {
        assert!(
            closed_by_server(oldest, DEADLINE).await,
            "the oldest idle channel stayed open"
        );
    }
    assert!(
        !closed_by_server(&mut held[count - 1], Duration::from_millis(500)).await,
        "the newest idle channel was closed"
    );
    format!(
        "{count} idle channels; a new partner connected and was answered, the oldest two closed"
    )
}

/// `count` HTTP connections sending a request head one byte every 300 ms: half on a new
/// connection (the fast path), half after a first request went to hyper on the same
/// connection. Each must be closed before its head is complete.
async fn slowloris(running: Running, count: usize) -> String {
    let head = b"GET /feeds/politics/rss.xml HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow\r\nAccept: */*\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut tasks = JoinSet::new();
    for i in 0..count {
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(running.http).await.unwrap();
            if i % 2 == 1 {
                // A first request that goes to hyper, answered in full.
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = vec![0; 4096];
                let n = stream.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
            }
            let mut sent = 0;
            for byte in head.iter() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut probe = [0; 512];
                match stream.try_read(&mut probe) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                    _ => {}
                }
            }
            (i % 2 == 1, sent)
        });
    }
    let mut most = 0;
    while let Some(done) = tasks.join_next().await {
        let (after_hyper, sent) = done.unwrap();
        assert!(
            sent < head.len(),
            "a slow head (after hyper: {after_hyper}) was read whole"
        );
        most = most.max(sent);
    }
    format!(
        "{count} connections ({} after a hand-over to hyper), one byte per 300 ms of a {}-byte head: all closed, at most {most} bytes in",
        count / 2,
        head.len()
    )
}

/// `count` connections posting a subscription request to the hub (`POST /websub`) whose
/// 1,000-byte body comes one byte every 300 ms, each byte soon enough to keep the
/// connection from idling out: each must be answered 408 and closed once the body has
/// taken the header timeout, long before it is whole.
async fn slow_bodies(running: Running, count: usize) -> String {
    const BODY: usize = 1_000;
    let head = format!(
        "POST /websub HTTP/1.1\r\nHost: localhost\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let head = head.clone();
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(running.http).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut sent = 0;
            let mut answer = Vec::new();
            let mut buf = [0; 512];
            // Reads what came before each byte is sent, so that the answer is read
            // before a byte sent after the close could reset the connection.
            let closed = loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                match stream.try_read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => {}
                }
                if sent == BODY || stream.write_all(b"h").await.is_err() {
                    break false;
                }
                sent += 1;
            };
            let closed = closed || {
                let rest = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
                matches!(rest, Ok(Ok(_)) | Ok(Err(_)))
            };
            (sent, answer, closed)
        });
    }
    let mut most = 0;
    while let Some(done) = tasks.join_next().await {
        let (sent, answer, closed) = done.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(sent < BODY, "a slow body was read whole");
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        assert!(closed, "a slow body's connection kept open after its 408");
        most = most.max(sent);
    }
    format!(
        "{count} POST /websub, one byte per 300 ms of a {BODY}-byte body: all answered 408 and closed, at most {most} bytes in"
    )
}

/// `count` connections asking for the large feed with a 4 KiB receive buffer and never
/// reading: the server must give up on each (its descriptors back to the baseline while
/// the clients still hold their sockets), and each client, reading at last, gets less
/// than the whole body.
async fn slow_readers(running: Running, count: usize, large: usize, pid: u32) -> String {
    let process = Process { pid };
    let before = process.fds();
    let mut held = Vec::new();
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(running.http).await.unwrap();
        stream
            .write_all(format!("GET {LARGE_FEED} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    // The server holds them while it waits to send…
    wait_until_fds("the slow readers are being served", &process, |fds| {
        fds >= before + count / 2
    })
    .await;
    // …and lets them go after the send timeout, while the clients still hold on.
    wait_until_fds("the slow readers are given up on", &process, |fds| {
        fds <= before + FD_SLACK
    })
    .await;
    let mut shortest = usize::MAX;
    let mut longest = 0;
    for mut stream in held {
        let mut received = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "the abandoned response never ended");
        shortest = shortest.min(received.len());
        longest = longest.max(received.len());
        assert!(
            received.len() < large,
            "a slow reader got {} bytes of a {large}-byte feed",
            received.len()
        );
    }
    format!(
        "{count} readers of a {large}-byte feed: all abandoned by the server, {shortest}–{longest} bytes delivered"
    )
}

async fn wait_until_fds(what: &str, process: &Process, done: impl Fn(usize) -> bool) {
    let start = Instant::now();
    loop {
        let fds = process.fds();
        if done(fds) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{what}: {fds} descriptors");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
