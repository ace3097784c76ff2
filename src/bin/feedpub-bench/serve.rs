//! Serve (issue 6 item 1, issue 5 item 7): wrk against feedpub and against nginx serving
//! the same files from feedpub's `feeds/` folder, with `gzip_static on`, at the same URL:
//! 200 identity, 200 gzip and 304. Every scenario is first checked with one request to
//! each server (status, coding, identical bytes); the load comes in slices that alternate
//! the servers.

use crate::Mode;
use crate::cpu::{Background, TICKS_PER_SECOND, tree_ticks};
use crate::fixture::{FEED_PATH, Fixture};
use crate::process::Process;
use crate::report::{Figure, Target};
use anyhow::Context;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Feedpub,
    Nginx,
}

/// One wrk load: the request headers sent to each server.
struct Scenario {
    name: &'static str,
    feedpub_headers: Vec<String>,
    nginx_headers: Vec<String>,
}

/// nginx running beside feedpub, and the checked scenarios.
pub struct Serve<'a> {
    fixture: &'a Fixture,
    nginx: Process,
    nginx_addr: SocketAddr,
    nginx_version: String,
    wrk_version: String,
    work: PathBuf,
    mode: Mode,
    scenarios: Vec<Scenario>,
    bytes: (usize, usize),
}

/// One response, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl<'a> Serve<'a> {
    /// Writes the nginx configuration, starts nginx and checks every scenario on both servers.
    pub async fn setup(fixture: &'a Fixture, work: &Path, mode: &Mode) -> anyhow::Result<Self> {
        let wrk_version = require_tool("wrk", &["-v"])?;
        let nginx_version = require_tool("nginx", &["-v"])?;
        let http = &fixture.http;
        let our_url = fixture.url(FEED_PATH);

        // feedpub first: its files on disk are what nginx will serve.
        let identity = get(http, &our_url, &[]).await?;
        let gzip = get(http, &our_url, &[("accept-encoding", "gzip")]).await?;
        expect(&identity, "feedpub", "200 identity", StatusCode::OK, None)?;
        expect(&gzip, "feedpub", "200 gzip", StatusCode::OK, Some("gzip"))?;
        let file = fixture.feeds_dir.join("politics/rss.xml");
        let on_disk = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
        let gz_on_disk = std::fs::read(file.with_extension("xml.gz"))?;
        anyhow::ensure!(
            identity.body == on_disk && gzip.body == gz_on_disk,
            "feedpub's answers differ from its files in {}",
            fixture.feeds_dir.display()
        );
        let cache_control = gzip.header(header::CACHE_CONTROL).unwrap_or("").to_owned();
        let link = gzip.header(header::LINK).unwrap_or("").to_owned();

        let dir = work.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let conf = nginx_conf(&dir, &fixture.feeds_dir, port, &cache_control, &link)?;
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let nginx_args = |extra: &[&str]| {
            let mut cmd = Command::new("nginx");
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(extra)
                .stdin(Stdio::null());
            cmd
        };
        let test = nginx_args(&["-t", "-q"]).output()?;
        anyhow::ensure!(
            test.status.success(),
            "nginx rejects {}: {}",
            conf_path.display(),
            String::from_utf8_lossy(&test.stderr)
        );
        let log = std::fs::File::create(dir.join("nginx.out"))?;
        let child = nginx_args(&[])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start nginx")?;
        let mut nginx = Process::new("nginx", child);
        let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until_listening(nginx_addr, &mut nginx).await?;
        eprintln!("nginx (pid {}) serves HTTP on {nginx_addr}", nginx.id());

        let url = format!("http://{nginx_addr}{FEED_PATH}");
        let n_identity = get(http, &url, &[]).await?;
        let n_gzip = get(http, &url, &[("accept-encoding", "gzip")]).await?;
        expect(&n_identity, "nginx", "200 identity", StatusCode::OK, None)?;
        expect(&n_gzip, "nginx", "200 gzip", StatusCode::OK, Some("gzip"))?;
        anyhow::ensure!(
            n_identity.body == identity.body && n_gzip.body == gzip.body,
            "nginx does not serve the same bytes as feedpub"
        );

        // 304: each server's own strong ETag of the gzip representation, with the
        // Accept-Encoding every aggregator sends.
        let mut scenarios = vec![
            Scenario {
                name: "200 identity",
                feedpub_headers: vec![],
                nginx_headers: vec![],
            },
            Scenario {
                name: "200 gzip",
                feedpub_headers: vec!["Accept-Encoding: gzip".into()],
                nginx_headers: vec!["Accept-Encoding: gzip".into()],
            },
        ];
        let etag = |a: &Answer, who: &str| {
            a.header(header::ETAG)
                .map(str::to_owned)
                .with_context(|| format!("{who} sent no ETag with gzip"))
        };
        let (our_tag, their_tag) = (etag(&gzip, "feedpub")?, etag(&n_gzip, "nginx")?);
        let conditional = |tag: &str| {
            vec![
                "Accept-Encoding: gzip".into(),
                format!("If-None-Match: {tag}"),
            ]
        };
        let our_304 = get(
            http,
            &our_url,
            &[("accept-encoding", "gzip"), ("if-none-match", &our_tag)],
        )
        .await?;
        let their_304 = get(
            http,
            &url,
            &[("accept-encoding", "gzip"), ("if-none-match", &their_tag)],
        )
        .await?;
        expect(&our_304, "feedpub", "304", StatusCode::NOT_MODIFIED, None)?;
        expect(&their_304, "nginx", "304", StatusCode::NOT_MODIFIED, None)?;
        anyhow::ensure!(
            our_304.body.is_empty() && their_304.body.is_empty(),
            "a 304 has a body"
        );
        scenarios.push(Scenario {
            name: "304",
            feedpub_headers: conditional(&our_tag),
            nginx_headers: conditional(&their_tag),
        });
        eprintln!(
            "serve: {FEED_PATH} is {} bytes, {} gzipped; ETags feedpub {our_tag}, nginx {their_tag}",
            identity.body.len(),
            gzip.body.len()
        );
        Ok(Self {
            fixture,
            nginx,
            nginx_addr,
            nginx_version,
            wrk_version,
            work: work.to_owned(),
            mode: mode.clone(),
            scenarios,
            bytes: (identity.body.len(), gzip.body.len()),
        })
    }

    /// What the serve figures were measured with, for the report header.
    pub fn peer_versions(&self) -> String {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "serve: {} ({workers} workers, gzip_static on) and feedpub, both loaded by {} -t{} -c{} for {} s each per scenario, in {} alternating slices; {FEED_PATH}: {} bytes, {} gzipped",
            self.nginx_version,
            self.wrk_version.split(" [").next().unwrap_or("wrk"),
            self.mode.wrk_threads,
            self.mode.wrk_connections,
            self.mode.wrk_duration.as_secs(),
            self.mode.wrk_slices,
            self.bytes.0,
            self.bytes.1
        )
    }

    /// One run: every scenario against both servers, in slices that alternate the servers
    /// (feedpub, nginx, nginx, feedpub, …; the other way round in odd runs), so that load
    /// from outside the benchmark that comes and goes hits both alike. A server's figure is
    /// the mean of its slices.
    pub async fn run(&self, run: usize) -> anyhow::Result<Vec<Figure>> {
        let background = Background::start(vec![self.fixture.pid(), self.nginx.id()]);
        let slices = self.mode.wrk_slices.max(1);
        let mut figures = Vec::new();
        let mut cpu_figures = Vec::new();
        for scenario in &self.scenarios {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let (mut our_cpu, mut their_cpu) = (Vec::new(), Vec::new());
            for slice in 0..slices {
                let order = if (run + slice).is_multiple_of(2) {
                    [Server::Feedpub, Server::Nginx]
                } else {
                    [Server::Nginx, Server::Feedpub]
                };
                for server in order {
                    let name = format!(
                        "run{}-{}-{server:?}-{}",
                        run + 1,
                        scenario.name.replace(' ', "-"),
                        slice + 1
                    );
                    let (rate, cpu) = self.measure(scenario, server, &name, slice == 0).await?;
                    match server {
                        Server::Feedpub => (ours.push(rate), our_cpu.push(cpu)),
                        Server::Nginx => (theirs.push(rate), their_cpu.push(cpu)),
                    };
                }
            }
            let (ours, theirs) = (mean(&ours), mean(&theirs));
            eprintln!(
                "serve run {} {:<12}: feedpub {ours:.0} req/s, nginx {theirs:.0} req/s",
                run + 1,
                scenario.name,
            );
            figures.push(Figure {
                name: format!("Serve: {}", scenario.name),
                unit: "req/s",
                feedpub: ours,
                peer: Some(("nginx", theirs)),
                target: Target::RatioAtLeast(1.0),
            });
            cpu_figures.push(Figure {
                name: format!("Serve: {}, server CPU per request", scenario.name),
                unit: "µs",
                feedpub: mean(&our_cpu),
                peer: Some(("nginx", mean(&their_cpu))),
                target: Target::Info,
            });
        }
        figures.extend(cpu_figures);
        figures.push(Figure {
            name: "Serve: CPU taken by other processes meanwhile".into(),
            unit: "% of machine",
            feedpub: background.percent(),
            peer: None,
            target: Target::Info,
        });
        Ok(figures)
    }

    /// One wrk slice against one server, profiled with `--perf` when it is feedpub's first:
    /// requests per second, and the server's CPU time per request in microseconds (a cost
    /// that, unlike the rate, load from outside the benchmark hardly changes).
    async fn measure(
        &self,
        scenario: &Scenario,
        server: Server,
        name: &str,
        first: bool,
    ) -> anyhow::Result<(f64, f64)> {
        let (url, headers, pid) = match server {
            Server::Feedpub => (
                self.fixture.url(FEED_PATH),
                &scenario.feedpub_headers,
                self.fixture.pid(),
            ),
            Server::Nginx => (
                format!("http://{}{FEED_PATH}", self.nginx_addr),
                &scenario.nginx_headers,
                self.nginx.id(),
            ),
        };
        let profile = server == Server::Feedpub && first;
        if profile {
            self.fixture.profile(true)?;
        }
        let ticks = tree_ticks(pid);
        let (rate, requests) = self.wrk(&url, headers, name).await?;
        let cpu = (tree_ticks(pid) - ticks) as f64 / TICKS_PER_SECOND;
        if profile {
            self.fixture.profile(false)?;
        }
        Ok((rate, cpu * 1e6 / requests.max(1) as f64))
    }

    /// Runs wrk once for a slice; see [`wrk`].
    async fn wrk(&self, url: &str, headers: &[String], name: &str) -> anyhow::Result<(f64, u64)> {
        let out = self.work.join(format!("wrk-{name}.txt"));
        let result = wrk(&self.mode, self.slice_seconds(), url, headers, &out).await?;
        self.fixture.ensure_running()?;
        Ok(result)
    }

    /// Seconds of one wrk slice.
    fn slice_seconds(&self) -> u64 {
        (self.mode.wrk_duration.as_secs() / self.mode.wrk_slices.max(1) as u64).max(1)
    }

    /// Stops nginx.
    pub fn stop(self) {
        self.nginx.stop();
    }
}

/// Runs wrk (the mode's threads and connections) for `seconds` and returns its requests
/// per second and its count of requests; its output is kept in the file `out`. Any non-2xx
/// or 3xx answer is an error.
pub async fn wrk(
    mode: &Mode,
    seconds: u64,
    url: &str,
    headers: &[String],
    out: &Path,
) -> anyhow::Result<(f64, u64)> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", mode.wrk_threads))
        .arg(format!("-c{}", mode.wrk_connections))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(url).stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let _ = std::fs::write(out, &text);
    let name = out.file_stem().unwrap_or_default().to_string_lossy();
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx or 3xx")) {
        anyhow::bail!("{name}: {}", line.trim());
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        eprintln!("{name}: {}", line.trim());
    }
    let rate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    // "  123456 requests in 2.00s, 1.23GB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    Ok((rate, requests))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// GETs `url` with `headers` (and no Accept-Encoding unless given).
async fn get(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let mut request = http.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    Ok(Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await?.to_vec(),
    })
}

/// Fails loudly unless `answer` has the status and content coding the scenario is about.
fn expect(
    answer: &Answer,
    server: &str,
    scenario: &str,
    status: StatusCode,
    coding: Option<&str>,
) -> anyhow::Result<()> {
    let got = answer.header(header::CONTENT_ENCODING);
    anyhow::ensure!(
        answer.status == status && got == coding,
        "{server} answers the {scenario} request with {} and Content-Encoding {got:?}, \
         not {status} and {coding:?}",
        answer.status
    );
    Ok(())
}

/// The first line a tool prints about its version; an error naming the install script when
/// the tool is missing.
pub fn require_tool(tool: &str, version_args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(tool)
        .args(version_args)
        .output()
        .with_context(|| {
            format!("{tool} is not installed: run `bash .ci/bench-peers` (Debian packages)")
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let first = text.lines().next().unwrap_or(tool).trim();
    Ok(first
        .strip_prefix("nginx version: ")
        .unwrap_or(first)
        .to_owned())
}

/// A port no one listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_until_listening(addr: SocketAddr, process: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        process.ensure_running()?;
        anyhow::ensure!(Instant::now() < deadline, "nginx does not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// nginx serving `feeds_dir` at `/feeds/` with precompressed gzip siblings, the headers
/// feedpub sends (Cache-Control, Link, Vary, Access-Control-Allow-Origin and -Expose-Headers), no access log,
/// and every path in `dir`.
fn nginx_conf(
    dir: &Path,
    feeds_dir: &Path,
    port: u16,
    cache_control: &str,
    link: &str,
) -> anyhow::Result<String> {
    let dir_s = dir.to_str().context("a UTF-8 temp path")?;
    let feeds = feeds_dir.to_str().context("a UTF-8 temp path")?;
    let mut conf = String::new();
    writeln!(
        conf,
        "# Written by feedpub-bench: nginx serving feedpub's feed files."
    )?;
    // As root, nginx would switch its workers to `nobody`; stay root so they can read the
    // working folder wherever it is.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        writeln!(conf, "user root;")?;
    }
    writeln!(conf, "worker_processes auto;")?;
    writeln!(conf, "daemon off;")?;
    writeln!(conf, "pid {dir_s}/nginx.pid;")?;
    writeln!(conf, "error_log {dir_s}/error.log warn;")?;
    writeln!(conf, "events {{ worker_connections 4096; }}")?;
    writeln!(conf, "http {{")?;
    writeln!(conf, "    access_log off;")?;
    for directive in temp_path_directives()? {
        writeln!(conf, "    {directive} {dir_s}/{directive};")?;
    }
    writeln!(conf, "    sendfile on;")?;
    writeln!(conf, "    tcp_nopush on;")?;
    // feedpub never closes a keep-alive connection after n requests; nor does nginx here.
    writeln!(conf, "    keepalive_requests 1000000000;")?;
    writeln!(
        conf,
        "    types {{ application/rss+xml xml; application/feed+json json; }}"
    )?;
    writeln!(conf, "    charset utf-8;")?;
    writeln!(
        conf,
        "    charset_types application/rss+xml application/feed+json;"
    )?;
    writeln!(conf, "    server {{")?;
    writeln!(conf, "        listen 127.0.0.1:{port};")?;
    writeln!(conf, "        location / {{ return 404; }}")?;
    writeln!(conf, "        location /feeds/ {{")?;
    writeln!(conf, "            alias {feeds}/;")?;
    writeln!(conf, "            gzip_static on;")?;
    writeln!(conf, "            gzip_vary on;")?;
    writeln!(conf, "            etag on;")?;
    if !cache_control.is_empty() {
        writeln!(
            conf,
            "            add_header Cache-Control \"{cache_control}\";"
        )?;
    }
    if !link.is_empty() && !link.contains('\'') {
        writeln!(conf, "            add_header Link '{link}';")?;
    }
    writeln!(
        conf,
        "            add_header Access-Control-Allow-Origin \"*\";"
    )?;
    writeln!(
        conf,
        "            add_header Access-Control-Expose-Headers \"ETag, Link\";"
    )?;
    writeln!(conf, "        }}")?;
    writeln!(conf, "    }}")?;
    writeln!(conf, "}}")?;
    Ok(conf)
}

/// The `*_temp_path` directives this nginx build knows, so that nothing is written outside
/// the working folder.
fn temp_path_directives() -> anyhow::Result<Vec<&'static str>> {
    let output = Command::new("nginx").arg("-V").output()?;
    let configure = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok([
        ("client-body", "client_body_temp_path", ""),
        ("proxy", "proxy_temp_path", "proxy"),
        ("fastcgi", "fastcgi_temp_path", "fastcgi"),
        ("uwsgi", "uwsgi_temp_path", "uwsgi"),
        ("scgi", "scgi_temp_path", "scgi"),
    ]
    .into_iter()
    .filter(|(flag, _, module)| {
        configure.contains(&format!("--http-{flag}-temp-path"))
            && (module.is_empty()
                || !configure.contains(&format!("--without-http_{module}_module")))
    })
    .map(|(_, directive, _)| directive)
    .collect())
}
