//! End-to-end tests of the `feedpub` binary: `partner add`, `serve` (with and without
//! `--demo`), configuration errors, environment variables and clean shutdown on signals.

mod common;

use common::binary::{DEADLINE, exit_within, feedpub, full_disk, partner_add, run, text, token_of};
use feedpub::cli::{Listening, listening_in};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{Article, ArticleState, ListSectionsRequest, PublishArticleRequest};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

/// The sections of the embedded sample configuration, in configuration order.
const SAMPLE_SECTIONS: [&str; 5] = ["party-building", "politics", "notices", "features", "rural"];

/// Kills and reaps the child when dropped, so no server outlives a failed assertion.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The stderr of a running server, line by line, read by a background thread.
struct Log {
    lines: Vec<String>,
    incoming: mpsc::Receiver<String>,
}

impl Log {
    fn follow(pipe: impl Read + Send + 'static) -> Self {
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines: Vec::new(),
            incoming,
        }
    }

    /// The first value `find` extracts from a line (seen before or arriving within the
    /// deadline); fails with the whole log when the process ends first or time runs out.
    fn wait_for<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        if let Some(found) = self.lines.iter().find_map(|l| find(l)) {
            return found;
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(line) => {
                    let found = find(&line);
                    self.lines.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {what} in the log within {DEADLINE:?}:\n{}", self.text())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the server closed its log before any {what}:\n{}",
                        self.text()
                    )
                }
            }
        }
    }

    /// Everything logged until the process closed stderr (or the deadline passed).
    fn until_closed(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        while let Ok(line) = self
            .incoming
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.lines.push(line);
        }
        self.text()
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A running `feedpub serve` on free ports, killed when dropped.
struct Server {
    child: ChildGuard,
    log: Log,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl Server {
    /// Starts `feedpub serve ARGS… --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0` in `cwd`
    /// and waits until both addresses are logged.
    fn start(cwd: &Path, args: &[&str]) -> Self {
        Self::start_with_env(cwd, args, &[])
    }

    /// [`Server::start`] with variables `env` set.
    fn start_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let (child, mut log) = Self::spawn(cwd, args, env);
        let grpc_addr = log.wait_for("gRPC address", |l| {
            listening_in(l).and_then(Listening::grpc)
        });
        let http_addr = log.wait_for("HTTP address", |l| {
            listening_in(l).and_then(Listening::http)
        });
        Self {
            child,
            log,
            grpc_addr,
            http_addr,
        }
    }

    /// `feedpub serve ARGS… --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0` in `cwd`, with
    /// `env`, and its log, followed.
    fn spawn(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (ChildGuard, Log) {
        let mut child = ChildGuard(
            feedpub(cwd)
                .envs(env.iter().copied())
                .arg("serve")
                .args(args)
                .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("feedpub serve starts"),
        );
        let log = Log::follow(child.0.stderr.take().expect("piped stderr"));
        (child, log)
    }

    /// Sends a signal (`TERM`, `INT`, …) with kill(1).
    fn signal(&self, name: &str) {
        signal(&self.child.0, name);
    }

    /// The exit status, which must come within the deadline.
    fn exit_status(&mut self) -> ExitStatus {
        exit_within(&mut self.child.0, DEADLINE).unwrap_or_else(|| {
            panic!(
                "the server did not stop within {DEADLINE:?}; log:\n{}",
                self.log.text()
            )
        })
    }

    async fn client(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("the gRPC API accepts connections")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }
}

/// Sends `child` a signal (`TERM`, `INT`, …) with kill(1).
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{name} failed: {status}");
}

/// `message` with `authorization: Bearer <token>` metadata.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII metadata"),
    );
    request
}

/// A small valid article for `section`.
fn article(id: &str, section: &str) -> PublishArticleRequest {
    PublishArticleRequest {
        article: Some(Article {
            id: id.to_owned(),
            section: section.to_owned(),
            title: "全市打击私采滥挖工作推进会召开".to_owned(),
            authors: vec!["武跃林".to_owned()],
            content_text: "第一段。\n\n第二段。".to_owned(),
            // 2023-06-07 07:00 +08:00
            publish_time: Some(prost_types::Timestamp {
                seconds: 1_686_092_400,
                nanos: 0,
            }),
            ..Article::default()
        }),
        ..Default::default()
    }
}

/// The body of `url` once `ready` accepts it, polled every 50 ms until the deadline.
async fn body_when(url: &str, ready: impl Fn(&str) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match reqwest::get(url).await {
            Ok(response) if response.status().is_success() => {
                let body = response.bytes().await.expect("a whole body").to_vec();
                if ready(&text(&body)) {
                    return body;
                }
                text(&body)
            }
            Ok(response) => format!("status {}", response.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{url} was not ready within {DEADLINE:?}; last answer:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn partner_add_prints_a_token_that_the_api_accepts_for_granted_sections_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-dir");
    let feeds = dir.path().join("feeds-dir");
    let data_arg = data.to_str().unwrap();

    let added = partner_add(
        dir.path(),
        &["wire", "--section", "politics", "--data-dir", data_arg],
    );
    let token = token_of(&added);
    assert!(
        text(&added.stdout).contains("politics"),
        "{}",
        text(&added.stdout)
    );

    let server = Server::start(
        dir.path(),
        &[
            "--data-dir",
            data_arg,
            "--feeds-dir",
            feeds.to_str().unwrap(),
        ],
    );
    let mut client = server.client().await;

    let sections = client
        .list_sections(with_token(ListSectionsRequest {}, &token))
        .await
        .expect("ListSections with the new token")
        .into_inner()
        .sections;
    let slugs: Vec<&str> = sections.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(slugs, SAMPLE_SECTIONS);

    let published = client
        .publish_article(with_token(article("brief-1", "politics"), &token))
        .await
        .expect("publishing to a granted section")
        .into_inner()
        .article
        .expect("the stored article");
    assert_eq!(published.section, "politics");
    assert_eq!(published.state, ArticleState::Published as i32);

    let denied = client
        .publish_article(with_token(article("brief-2", "rural"), &token))
        .await
        .expect_err("publishing to a section not granted");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let wrong_token = format!("fp_{}", "0".repeat(token.len() - 3));
    for request in [
        with_token(ListSectionsRequest {}, &wrong_token),
        tonic::Request::new(ListSectionsRequest {}),
    ] {
        let refused = client
            .list_sections(request)
            .await
            .expect_err("a call with a wrong or no token");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let refused = client
        .publish_article(with_token(article("brief-3", "politics"), &wrong_token))
        .await
        .expect_err("publishing with a wrong token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

#[test]
fn partner_add_refuses_a_taken_name_an_unknown_section_and_a_missing_grant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    token_of(&partner_add(
        dir.path(),
        &["wire", "--all-sections", "--data-dir", data_arg],
    ));
    let again = partner_add(
        dir.path(),
        &["wire", "--section", "rural", "--data-dir", data_arg],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let unknown = partner_add(
        dir.path(),
        &["other", "--section", "nope", "--data-dir", data_arg],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("nope"),
        "{}",
        text(&unknown.stderr)
    );

    let no_grant = partner_add(dir.path(), &["other", "--data-dir", data_arg]);
    assert_eq!(
        no_grant.status.code(),
        Some(2),
        "clap usage errors exit with 2"
    );
    let stderr = text(&no_grant.stderr);
    assert!(
        stderr.contains("<--section <SLUG>|--all-sections>") && stderr.contains("(usage: "),
        "{stderr}"
    );

    // None of the refusals printed a token.
    for output in [&again, &unknown, &no_grant] {
        assert!(!text(&output.stdout).contains("fp_"));
    }
}

/// Starts `serve --demo` in a fresh folder, checks the sample edition is served and written,
/// then stops the server with `signal` and expects a clean exit.
async fn demo_is_served_then_stops_cleanly_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--demo"]);

    // Articles are published in page order, and "幸福新邻里" is the first: waiting for the
    // last one (the rural report) too means the feed was rebuilt after every commit.
    let body = body_when(&server.url("/feeds/all/rss.xml"), |body| {
        body.contains("幸福新邻里") && body.contains("右玉县农旅融合助力乡村振兴")
    })
    .await;
    let feed = feed_rs::parser::parse(&body[..]).expect("the RSS feed parses");
    let titles: Vec<String> = feed
        .entries
        .iter()
        .map(|e| {
            e.title
                .as_ref()
                .map(|t| t.content.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(titles.len(), 6, "{titles:#?}");
    assert!(
        !titles.iter().any(|t| t.contains("组织部公示")),
        "the notice expired on 2023-06-14 and must not be in the feed: {titles:#?}"
    );
    // The file follows the served feed within milliseconds: a feed is served as soon as it
    // is rendered, then compressed and written.
    let start = Instant::now();
    while std::fs::read(dir.path().join("feeds/all/rss.xml"))
        .ok()
        .as_ref()
        != Some(&body)
    {
        assert!(
            start.elapsed() < DEADLINE,
            "feeds/all/rss.xml never became the served feed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.path().join("data/feedpub.sqlite3").exists());

    server.signal(signal);
    let status = server.exit_status();
    let log = server.log.until_closed();
    assert!(
        status.success(),
        "exit after SIG{signal}: {status}; log:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

/// `serve --demo` stores only the articles of the sample edition the demo partner lacks:
/// one an editor retracted stays retracted when the server starts again with `--demo`.
#[test]
fn a_restart_with_demo_does_not_undo_an_editors_retraction() {
    const ID: &str = "2023-06-07-gonglu-guihua-tiaozheng";
    let dir = tempfile::tempdir().unwrap();
    let published = |server: &mut Server| {
        server.log.wait_for("the sample edition", |l| {
            l.contains("sample edition published")
                .then(|| l.split("stored=").nth(1).map(|n| n.trim().to_owned()))
                .flatten()
        })
    };
    let mut server = Server::start(dir.path(), &["--demo"]);
    assert_eq!(published(&mut server), "7");
    let token = token_of(&run(
        feedpub(dir.path()).args(["partner", "rotate", "newsroom"])
    ));
    let retract = run(feedpub(dir.path())
        .args(["retract", ID, "--reason", "数据有误"])
        .arg("--server")
        .arg(format!("http://{}", server.grpc_addr))
        .env("FEEDPUB_TOKEN", &token));
    assert!(retract.status.success(), "{}", text(&retract.stderr));
    server.signal("TERM");
    assert!(server.exit_status().success());

    let mut server = Server::start(dir.path(), &["--demo"]);
    assert_eq!(published(&mut server), "0");
    let got = run(feedpub(dir.path())
        .args(["get", ID, "--json"])
        .arg("--server")
        .arg(format!("http://{}", server.grpc_addr))
        .env("FEEDPUB_TOKEN", &token));
    let article: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(article["state"], "retracted", "{article}");
    server.signal("TERM");
    assert!(server.exit_status().success());
}

#[tokio::test]
async fn serve_demo_publishes_the_sample_edition_and_stops_cleanly_on_sigterm() {
    demo_is_served_then_stops_cleanly_on("TERM").await;
}

#[tokio::test]
async fn serve_demo_publishes_the_sample_edition_and_stops_cleanly_on_sigint() {
    demo_is_served_then_stops_cleanly_on("INT").await;
}

/// `/metrics` of a fresh server: every metric family has its `# HELP` and `# TYPE` lines,
/// and the counters whose series are known at start are there at zero before their first
/// event, so that a rate over them sees that event.
#[tokio::test]
async fn metrics_are_described_and_known_series_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--demo"]);
    body_when(&server.url("/feeds/all/rss.xml"), |body| {
        body.contains("右玉县农旅融合助力乡村振兴")
    })
    .await;
    let metrics = text(&body_when(&server.url("/metrics"), |_| true).await);

    let families: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("feedpub_"))
        .map(|l| l.split(['{', ' ']).next().unwrap_or(l))
        .map(|series| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| series.strip_suffix(suffix))
                .filter(|family| metrics.contains(&format!("# TYPE {family} histogram")))
                .unwrap_or(series)
        })
        .collect();
    for family in [
        "feedpub_publish_total",
        "feedpub_publish_seconds",
        "feedpub_feed_regenerations_total",
        "feedpub_fault",
        "feedpub_websub_deliveries_total",
    ] {
        assert!(families.contains(family), "{family} missing:\n{metrics}");
    }
    for family in &families {
        for line in ["# HELP", "# TYPE"] {
            let start = format!("{line} {family} ");
            assert!(
                metrics.lines().any(|l| l.starts_with(&start)),
                "no `{line}` for {family}:\n{metrics}"
            );
        }
    }
    // Nothing of these happened, and each is shown.
    for series in [
        r#"feedpub_publish_total{outcome="failed"} 0"#,
        r#"feedpub_websub_deliveries_total{result="gone"} 0"#,
        r#"feedpub_websub_deliveries_total{result="superseded"} 0"#,
        r#"feedpub_websub_deliveries_total{result="unsubscribed"} 0"#,
        r#"feedpub_connection_timeouts_total{listener="grpc",reason="send"} 0"#,
        "feedpub_grpc_rate_limited_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing:\n{metrics}"
        );
    }
}

/// `FEEDPUB_DEMO` takes the values people write for a switch in the environment (`1`,
/// `off`), not only `true` and `false`.
#[test]
fn feedpub_demo_in_the_environment_takes_1_and_off() {
    const PUBLISHED: &str = "sample edition published";
    for (value, demo) in [("1", true), ("off", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_with_env(dir.path(), &[], &[("FEEDPUB_DEMO", value)]);
        if demo {
            server
                .log
                .wait_for(PUBLISHED, |l| l.contains(PUBLISHED).then_some(()));
        }
        server.signal("TERM");
        let status = server.exit_status();
        let log = server.log.until_closed();
        assert!(status.success(), "FEEDPUB_DEMO={value}: {status}\n{log}");
        assert_eq!(
            log.contains(PUBLISHED),
            demo,
            "FEEDPUB_DEMO={value}:\n{log}"
        );
    }
}

/// A value refused from a `FEEDPUB_…` variable is named by the variable, since the flag it
/// stands for was never typed; a refused flag is named by the flag.
#[test]
fn a_bad_value_in_the_environment_is_named_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = run(feedpub(dir.path())
        .args(["serve", "--demo"])
        .env("FEEDPUB_GRPC_ADDR", "port-50051"));
    let said = text(&from_env.stderr);
    assert_eq!(from_env.status.code(), Some(2), "{said}");
    assert_eq!(
        said.trim_end(),
        "feedpub: FEEDPUB_GRPC_ADDR \"port-50051\" is not a valid value for --grpc-addr: \
         invalid socket address syntax"
    );
    let from_env = run(feedpub(dir.path())
        .arg("serve")
        .env("FEEDPUB_DEMO", "maybe"));
    let said = text(&from_env.stderr);
    assert_eq!(from_env.status.code(), Some(2), "{said}");
    assert!(
        said.starts_with("feedpub: FEEDPUB_DEMO \"maybe\" is not a valid value for --demo"),
        "{said}"
    );
    // An empty variable is said to be empty, not left mid-sentence.
    // The file has a key for the first three; --demo has none.
    for (variable, unset) in [
        (
            "FEEDPUB_DATA_DIR",
            "to leave the setting to the configuration file",
        ),
        (
            "FEEDPUB_FEEDS_DIR",
            "to leave the setting to the configuration file",
        ),
        (
            "FEEDPUB_DATABASE_URL",
            "to leave the setting to the configuration file",
        ),
        ("FEEDPUB_DEMO", "for the default"),
    ] {
        let empty = run(feedpub(dir.path()).arg("serve").env(variable, ""));
        let said = text(&empty.stderr);
        assert_eq!(empty.status.code(), Some(2), "{variable}: {said}");
        assert!(
            said.starts_with(&format!(
                "feedpub: {variable} \"\" is not a valid value for"
            )) && said
                .trim_end()
                .ends_with(&format!("it is empty (unset it {unset})")),
            "{variable}: {said}"
        );
    }
    // Typed, the flag is what is wrong, whatever the environment holds.
    for typed in [
        &["--grpc-addr", "port-50051"][..],
        &["--grpc-addr=port-50051"],
    ] {
        let flagged = run(feedpub(dir.path())
            .args(["serve", "--demo"])
            .args(typed)
            .env("FEEDPUB_GRPC_ADDR", "port-50051"));
        let said = text(&flagged.stderr);
        assert_eq!(flagged.status.code(), Some(2), "{said}");
        assert!(said.contains("for '--grpc-addr <GRPC_ADDR>'"), "{said}");
        assert!(!said.contains("FEEDPUB_GRPC_ADDR"), "{said}");
    }
}

/// A bad command line is one line on stderr, as every other error: `feedpub: `, what is
/// wrong (with clap's tip) and the usage of the command at fault; exit code 2. Help asked for
/// is printed whole.
#[test]
fn a_bad_command_line_is_one_line_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["list", "--limit", "abc"][..],
            "invalid value 'abc' for '--limit <LIMIT>'",
        ),
        (
            &["list", "--limt", "3"],
            "a similar argument exists: '--limit'",
        ),
        (
            &["partner", "add", "county-news"],
            "<--section <SLUG>|--all-sections>",
        ),
        (
            &["serve", "--nope"],
            "(usage: feedpub serve [OPTIONS]; --help says more)",
        ),
        // An empty value (a script's variable that is unset) is not taken for none: a
        // watch would start from now, a list would show every section.
        (
            &["watch", "--cursor", ""],
            "a value is required for '--cursor <CURSOR>'",
        ),
        (
            &["watch", "--section", ""],
            "a value is required for '--section <SLUG>'",
        ),
        (
            &["list", "--section", ""],
            "a value is required for '--section <SLUG>'",
        ),
        // An empty database URL would put SQLite in place of the file's PostgreSQL.
        (
            &["serve", "--database-url", ""],
            "a value is required for '--database-url <DATABASE_URL>'",
        ),
    ] {
        let output = run(feedpub(dir.path()).args(args));
        let said = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{args:?}: {said}");
        assert!(
            said.starts_with("feedpub: ") && said.contains(says),
            "{args:?}: {said}"
        );
    }
    let help = run(feedpub(dir.path()).args(["partner", "add", "--help"]));
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--all-sections"));
}

/// A signal while start-up waits for a database that does not answer stops the server at
/// once, cleanly, rather than after the wait for the database runs out (10 s).
#[test]
fn a_signal_while_the_database_does_not_answer_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Connections are taken by the kernel, and nothing ever answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://feedpub@{}/feedpub",
        silent.local_addr().unwrap()
    );
    let (mut child, mut log) = Server::spawn(dir.path(), &["--database-url", &url], &[]);
    // Well into start-up, waiting for the database.
    std::thread::sleep(std::time::Duration::from_secs(1));
    signal(&child.0, "TERM");
    let status = exit_within(&mut child.0, DEADLINE).expect("stopped");
    let log = log.until_closed();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("stopped during start-up"), "{log}");
    assert!(!log.contains("no answer from the database"), "{log}");
}

#[test]
fn a_signal_during_start_up_still_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Signalled as soon as the addresses are logged: the demo edition may still be
    // publishing, and the server must stop cleanly all the same.
    let mut server = Server::start(dir.path(), &["--demo"]);
    server.signal("TERM");
    let status = server.exit_status();
    let log = server.log.until_closed();
    assert!(
        status.success(),
        "exit after an early SIGTERM: {status}; log:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn serve_refuses_a_bad_config_file_naming_the_file_line_and_key() {
    const SITE: &str = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
    // (configuration, line named, key named)
    let cases = [
        (
            format!("{SITE}\n[[sections]]\nslug = \"Bad Slug\"\ntitle = \"t\"\n"),
            "line 7",
            "slug",
        ),
        (format!("{SITE}colour = \"red\"\n"), "line 5", "colour"),
        (
            format!("{SITE}[feeds]\nmax_items = 0\n"),
            "line 6",
            "max_items",
        ),
        (
            format!(
                "{SITE}[[sections]]\nslug = \"a\"\ntitle = \"t\"\n[[sections]]\nslug = \"a\"\ntitle = \"t\"\n"
            ),
            "line 8",
            "slug",
        ),
    ];
    for (config, line, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("feedpub.toml");
        std::fs::write(&file, &config).unwrap();
        let output = run(feedpub(dir.path()).args([
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ]));
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{config}");
        let message = stderr
            .lines()
            .filter(|l| !l.contains(" | "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            message.contains(key),
            "the message itself names {key:?}:\n{stderr}"
        );
        for wanted in [file.to_str().unwrap(), line, key] {
            assert!(
                stderr.contains(wanted),
                "stderr does not name {wanted:?} for\n{config}\nstderr:\n{stderr}"
            );
        }
        assert!(
            !dir.path().join("data").exists(),
            "nothing is created when the configuration is refused"
        );
    }
}

#[test]
fn serve_finds_feedpub_toml_in_the_working_folder_and_names_it_when_it_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("feedpub.toml"),
        "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh CN\"\n",
    )
    .unwrap();
    let output = run(feedpub(dir.path()).args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]));
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    for wanted in ["feedpub.toml", "line 4", "language"] {
        assert!(stderr.contains(wanted), "{wanted:?} in\n{stderr}");
    }

    // A link to a file that is gone is named too: the embedded sample in its place would
    // publish another site's sections.
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink("/etc/feedpub/gone.toml", linked.join("feedpub.toml")).unwrap();
    let output = run(feedpub(&linked).args(["migrate"]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "feedpub: cannot read configuration file feedpub.toml: it is a link to \
             /etc/feedpub/gone.toml, which does not exist"
        ),
        "{stderr}"
    );
    assert!(!linked.join("data").exists(), "{stderr}");
}

#[test]
fn feedpub_data_dir_from_the_environment_is_used_and_a_flag_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");

    token_of(&run(feedpub(dir.path())
        .env("FEEDPUB_DATA_DIR", &from_env)
        .args(["partner", "add", "wire", "--section", "politics"])));
    assert!(from_env.join("feedpub.sqlite3").exists());
    assert!(
        !dir.path().join("data").exists(),
        "the default ./data is not used"
    );

    // The same database: the name is now taken there.
    let again = partner_add(
        dir.path(),
        &[
            "wire",
            "--section",
            "politics",
            "--data-dir",
            from_env.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let other_env = dir.path().join("other-env");
    token_of(&run(feedpub(dir.path())
        .env("FEEDPUB_DATA_DIR", &other_env)
        .args(["partner", "add", "wire", "--all-sections", "--data-dir"])
        .arg(&from_flag)));
    assert!(from_flag.join("feedpub.sqlite3").exists());
    assert!(!other_env.exists(), "the flag wins over FEEDPUB_DATA_DIR");
}

#[test]
fn logs_are_json_lines_when_the_configuration_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[log]\nformat = \"json\"\n",
        feedpub::config::EMBEDDED_CONFIG
    );
    std::fs::write(dir.path().join("feedpub.toml"), config).unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.signal("TERM");
    assert!(server.exit_status().success());
    let log = server.log.until_closed();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// Runs `serve --demo` in `dir` until the sample edition is published, stops it, and
/// returns `feedpub export` of its database.
fn sample_edition_export(dir: &Path) -> String {
    let mut server = Server::start(dir, &["--demo"]);
    server.log.wait_for("the sample edition", |l| {
        l.contains("sample edition published").then_some(())
    });
    server.signal("TERM");
    assert!(server.exit_status().success());
    let exported = run(feedpub(dir)
        .arg("export")
        .arg("--data-dir")
        .arg(dir.join("data")));
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    text(&exported.stdout)
}

/// `feedpub import` takes rows without a publish, so it checks what feeds carry as
/// publishing leaves it: an export edited to carry a script, a `javascript:` link, a
/// control character or a media file without an http(s) URL is refused, naming the line
/// and the column, and nothing of it is stored. So is a value feedpub could not read back
/// (a partner's name, sections or token hash, an article id or language, an audit entry's
/// operation or peer), which would make every partner, the partner's calls or the audit
/// log unreadable. The export as written imports whole.
#[test]
fn import_refuses_rows_no_publish_would_store_and_stores_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let lines: Vec<&str> = export.lines().collect();
    // The first row of `table`, and its line.
    let first_row = |table: &str| {
        lines
            .iter()
            .enumerate()
            .find_map(|(i, l)| {
                let row: serde_json::Value = serde_json::from_str(l).unwrap();
                (row["table"] == table).then_some((i, row))
            })
            .unwrap_or_else(|| panic!("the export holds {table}"))
    };
    let import = |name: &str, dump: &str| {
        let file = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, dump).unwrap();
        run(feedpub(dir.path())
            .arg("import")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join(name)))
    };
    let cases = [
        (
            "articles",
            "content_html",
            serde_json::json!("<p>正文</p><script>alert(1)</script>"),
            "sanitiser",
        ),
        (
            "articles",
            "canonical_url",
            serde_json::json!("javascript:alert(1)"),
            "http",
        ),
        (
            "articles",
            "title",
            serde_json::json!("标题\u{1}"),
            "U+0001",
        ),
        (
            "articles",
            "state",
            serde_json::json!(99),
            "99 is not a state",
        ),
        (
            "articles",
            "section",
            serde_json::json!("Bad Slug"),
            "\"Bad Slug\" is not a section slug",
        ),
        (
            "articles",
            "media",
            serde_json::json!(
                r#"[{"url":"data:image/png;base64,AA","mime_type":"image/png","length":0,"caption":"","width":null,"height":null}]"#
            ),
            "[0].url",
        ),
        (
            "articles",
            "article_id",
            serde_json::json!("a/b"),
            "\"a/b\" is not an article id",
        ),
        ("articles", "language", serde_json::json!("中文"), "BCP 47"),
        (
            "articles",
            "guid",
            serde_json::json!("tag:\u{7f}"),
            "U+007F",
        ),
        (
            "partners",
            "name",
            serde_json::json!("News Room"),
            "\"News Room\" is not a partner name",
        ),
        (
            "partners",
            "sections",
            serde_json::json!("politics"),
            "is not a JSON array of section slugs",
        ),
        (
            "partners",
            "sections",
            serde_json::json!(r#"["politics","Sports"]"#),
            "[1] \"Sports\" is not a section slug",
        ),
        (
            "partners",
            "token_hash",
            serde_json::json!("abc"),
            "SHA-256",
        ),
        (
            "audit_log",
            "operation",
            serde_json::json!("article.delete"),
            "is not an operation",
        ),
        (
            "audit_log",
            "peer",
            serde_json::json!("nowhere"),
            "is not an address",
        ),
    ];
    for (case, (table, column, value, says)) in cases.into_iter().enumerate() {
        // A folder of its own for each case.
        let name = format!("{case}-{table}-{column}");
        let (at, row) = first_row(table);
        let mut edited = row;
        edited["row"][column] = value;
        let mut dump = lines.clone();
        let edited = edited.to_string();
        dump[at] = &edited;
        let refused = import(&name, &(dump.join("\n") + "\n"));
        let stderr = text(&refused.stderr);
        assert!(!refused.status.success(), "{column}: {stderr}");
        assert!(
            stderr.contains(&format!("line {} of the export: {column}: ", at + 1))
                && stderr.contains(says),
            "{column}: {stderr}"
        );
        // `--trust-html` takes HTML as it is (for a sanitiser changed since the export),
        // and only HTML.
        let trusted = run(feedpub(dir.path())
            .arg("import")
            .arg(dir.path().join(format!("{name}.jsonl")))
            .arg("--trust-html")
            .arg("--data-dir")
            .arg(dir.path().join(format!("{name}-trusted"))));
        assert_eq!(
            trusted.status.success(),
            column == "content_html",
            "{column} with --trust-html: {}",
            text(&trusted.stderr)
        );
        // Nothing of it was stored: the same folder takes the export as written, which
        // only an empty database does.
        let whole = import(&name, &export);
        assert!(whole.status.success(), "{column}: {}", text(&whole.stderr));
        assert!(
            text(&whole.stdout).contains(&format!(
                "{} articles",
                lines
                    .iter()
                    .filter(|l| l.contains(r#""table":"articles""#))
                    .count()
            )),
            "{}",
            text(&whole.stdout)
        );
    }
}

/// An export of version 1 (before the events said where an article left a reader's view)
/// imports into a new database; a version this feedpub does not know is refused at once,
/// naming the first line. Rows of an export before version 4 take their change time as
/// the time their feeds last changed; those of version 4 keep theirs, none included. Names
/// keep when they were first stored from version 5 on, and are dated before it.
/// Subscriptions keep where their callback was reached from version 6 on, and have none
/// before it. The site the feeds' Atom ids begin with is carried from version 7 on.
#[test]
fn exports_of_earlier_versions_import_and_later_ones_are_refused_at_their_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let mut lines = export.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 7, "{header}");
    assert!(
        export.contains(r#""table":"site_identity""#),
        "a served database records its site: {export}"
    );
    let mut rows: Vec<serde_json::Value> =
        lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    // Version 3 ends with the row counts; earlier versions have no such line.
    let mut end = rows.pop().unwrap();
    assert!(end["end"]["articles"].as_u64() > Some(0), "{end}");
    // A WebSub subscription, as a hub recorded it.
    let lease_end = 4_102_444_800_000_000_000_i64; // 2100
    rows.push(serde_json::json!({"table": "websub_subscriptions", "row": {
        "topic": "politics/atom.xml", "callback": "https://reader.example/cb",
        "secret": null, "create_time": 1, "verify_time": 1, "expire_time": lease_end,
        "callback_address": "192.0.2.1",
    }}));
    end["end"]["websub_subscriptions"] = serde_json::json!(1);
    // An article that feeds showed, exported at version 4 as one whose feeds no write has
    // changed (as a notice the sample edition stores already expired is).
    let unshown = rows
        .iter()
        .find(|row| row["table"] == "articles" && row["row"]["shown_change_time"].is_i64())
        .map(|row| row["row"]["article_id"].clone())
        .unwrap();
    let shown_rows = ["articles", "article_authors", "article_tags"];
    let as_version = |version: u64| {
        let mut text =
            serde_json::json!({"format": "feedpub-export", "version": version}).to_string();
        for row in &rows {
            let mut row = row.clone();
            if version < 4 && row["table"] == "feed_sizes"
                || version < 7 && row["table"] == "site_identity"
            {
                continue;
            }
            if version < 5 && row["table"] == "feed_sizes" {
                let columns = row["row"].as_object_mut().unwrap();
                assert!(columns.remove("first_stored").is_some(), "{row}");
            }
            if version < 6 && row["table"] == "websub_subscriptions" {
                let columns = row["row"].as_object_mut().unwrap();
                assert!(columns.remove("callback_address").is_some(), "{row}");
            }
            if version == 1 && row["table"] == "article_events" {
                let columns = row["row"].as_object_mut().unwrap();
                assert!(columns.remove("left_section").is_some());
                assert!(columns.remove("left_embargoed").is_some());
            }
            if shown_rows.iter().any(|table| row["table"] == *table) {
                let columns = row["row"].as_object_mut().unwrap();
                assert!(columns.contains_key("shown_change_time"), "{row}");
                if version < 4 {
                    columns.remove("shown_change_time");
                } else if columns["article_id"] == unshown {
                    columns["shown_change_time"] = serde_json::Value::Null;
                }
            }
            text.push('\n');
            text.push_str(&row.to_string());
        }
        if version >= 3 {
            let mut end = end.clone();
            if version < 4 {
                end["end"].as_object_mut().unwrap().remove("feed_sizes");
            }
            if version < 7 {
                end["end"].as_object_mut().unwrap().remove("site_identity");
            }
            text.push('\n');
            text.push_str(&end.to_string());
        }
        text
    };
    let first_stored = |rows: &[serde_json::Value]| -> Vec<(String, serde_json::Value)> {
        rows.iter()
            .filter(|row| {
                row["table"] == "feed_sizes"
                    && (row["row"]["kind"] == "author" || row["row"]["kind"] == "tag")
            })
            .map(|row| {
                let name = format!("{}/{}", row["row"]["kind"], row["row"]["name"]);
                (name, row["row"]["first_stored"].clone())
            })
            .collect()
    };
    let names_stored = first_stored(&rows);
    assert!(!names_stored.is_empty());
    for (version, imports) in [
        (1, true),
        (2, true),
        (3, true),
        (4, true),
        (5, true),
        (6, true),
        (7, true),
        (8, false),
    ] {
        let file = dir.path().join(format!("v{version}.jsonl"));
        std::fs::write(&file, as_version(version)).unwrap();
        let target = dir.path().join(format!("target-{version}"));
        let imported = run(feedpub(dir.path())
            .arg("import")
            .arg(&file)
            .arg("--data-dir")
            .arg(&target));
        assert_eq!(
            imported.status.success(),
            imports,
            "{}",
            text(&imported.stderr)
        );
        if !imports {
            assert!(
                text(&imported.stderr).contains("line 1"),
                "{}",
                text(&imported.stderr)
            );
            continue;
        }
        let exported = run(feedpub(dir.path())
            .arg("export")
            .arg("--data-dir")
            .arg(&target));
        assert!(exported.status.success(), "{}", text(&exported.stderr));
        let exported_rows: Vec<serde_json::Value> = text(&exported.stdout)
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let subscription = exported_rows
            .iter()
            .find(|row| row["table"] == "websub_subscriptions")
            .unwrap();
        let address = match version {
            6.. => serde_json::json!("192.0.2.1"),
            _ => serde_json::Value::Null,
        };
        assert_eq!(
            subscription["row"]["callback_address"], address,
            "v{version}"
        );
        // Every name is dated: as exported from version 5 on, else by its first article.
        let dated = first_stored(&exported_rows);
        assert_eq!(dated.len(), names_stored.len(), "v{version}");
        for ((name, date), (_, was)) in dated.iter().zip(&names_stored) {
            assert!(date.is_i64(), "v{version}: {name} {date}");
            if version == 5 {
                assert_eq!(date, was, "{name}");
            }
        }
        // Rows come out in the order they went in.
        let with_shown = |rows: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
            rows.into_iter()
                .filter(|row| shown_rows.iter().any(|table| row["table"] == *table))
                .map(|row| row["row"].clone())
                .collect()
        };
        let again = with_shown(
            text(&exported.stdout)
                .lines()
                .skip(1)
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        );
        let before = with_shown(rows.clone());
        assert_eq!(again.len(), before.len(), "v{version}");
        for (row, was) in again.iter().zip(&before) {
            assert_eq!(row["article_id"], was["article_id"]);
            let expected = match version {
                4.. if row["article_id"] == unshown => serde_json::Value::Null,
                4.. => was["shown_change_time"].clone(),
                _ => was["change_time"].clone(),
            };
            assert_eq!(row["shown_change_time"], expected, "v{version}: {row}");
        }
    }
}

/// `feedpub import --allow-non-empty` into a database that holds articles places the new
/// ones among them by when they were first stored, shifting every archive page from the
/// earliest on: those pages are dated by the import, so that a reader revalidating by
/// date alone fetches them again. The database keeps its site (the base of its feeds'
/// Atom ids), though the import carries another's.
#[test]
fn an_import_among_stored_articles_dates_the_archive_pages_it_shifts() {
    import_among_stored_articles(None);
}

/// The same on PostgreSQL.
#[test]
fn on_postgresql_an_import_among_stored_articles_dates_the_archive_pages_it_shifts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(common::postgres::fresh_database()) else {
        return;
    };
    import_among_stored_articles(Some(&database.url));
    runtime.block_on(database.remove());
}

/// Imports half of the sample edition, then the other half with `--allow-non-empty`, then
/// one byline of an article of the first half, into a new SQLite database or the
/// PostgreSQL database at `database_url`.
fn import_among_stored_articles(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let mut rows: Vec<(&str, serde_json::Value)> = export
        .lines()
        .map(|l| (l, serde_json::from_str(l).unwrap()))
        .collect();
    // The row counts that end the export, made again for each part.
    let (_, end) = rows.pop().unwrap();
    let tables: Vec<String> = end["end"].as_object().unwrap().keys().cloned().collect();
    let with_end = |dump: &str| {
        let rows: Vec<serde_json::Value> = dump
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let counts: serde_json::Map<String, serde_json::Value> = tables
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    rows.iter().filter(|r| r["table"] == **t).count().into(),
                )
            })
            .collect();
        format!("{dump}{}\n", serde_json::json!({ "end": counts }))
    };
    // Every other article, with its rows, is held back for the second import.
    let ids: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|(_, row)| row["table"] == "articles")
        .map(|(_, row)| &row["row"]["article_id"])
        .collect();
    assert!(ids.len() >= 4, "{} articles", ids.len());
    let later: Vec<&serde_json::Value> = ids.iter().skip(1).step_by(2).copied().collect();
    // And one byline of an article of the first import, for a third.
    let byline = rows
        .iter()
        .position(|(_, row)| {
            row["table"] == "article_authors" && !later.contains(&&row["row"]["article_id"])
        })
        .unwrap();
    let author = rows[byline].1["row"]["name"].as_str().unwrap().to_owned();
    let (mut first, mut second, mut third) = (String::new(), String::new(), String::new());
    for (at, (line, row)) in rows.iter().enumerate() {
        let held_back = at > 0 && later.contains(&&row["row"]["article_id"]);
        for (file, takes) in [
            (&mut first, !held_back && at != byline),
            (&mut second, held_back || at == 0),
            (&mut third, at == byline || at == 0),
        ] {
            if takes {
                file.push_str(line);
                file.push('\n');
            }
        }
    }
    let target = dir.path().join("merged");
    let import = |name: &str, dump: &str, extra: &[&str]| {
        let file = dir.path().join(name);
        std::fs::write(&file, with_end(dump)).unwrap();
        let mut command = feedpub(dir.path());
        command.arg("import").arg(&file).args(extra);
        match database_url {
            Some(url) => command.args(["--database-url", url]),
            None => command.arg("--data-dir").arg(&target),
        };
        let imported = run(&mut command);
        assert!(imported.status.success(), "{}", text(&imported.stderr));
    };
    import("first.jsonl", &first, &[]);
    // Without --allow-non-empty, refused, saying what the database holds.
    let mut refused = feedpub(dir.path());
    refused.arg("import").arg(dir.path().join("first.jsonl"));
    match database_url {
        Some(url) => refused.args(["--database-url", url]),
        None => refused.arg("--data-dir").arg(&target),
    };
    let refused = run(&mut refused);
    let stderr = text(&refused.stderr);
    let articles = first.matches(r#""table":"articles""#).count();
    assert!(
        !refused.status.success()
            && stderr.contains(&format!("already holds 1 partners and {articles} articles")),
        "{stderr}"
    );
    // With --allow-non-empty, the partner's key it holds already is named, and why.
    let mut again = feedpub(dir.path());
    again
        .arg("import")
        .arg(dir.path().join("first.jsonl"))
        .arg("--allow-non-empty");
    match database_url {
        Some(url) => again.args(["--database-url", url]),
        None => again.arg("--data-dir").arg(&target),
    };
    let again = run(&mut again);
    let stderr = text(&again.stderr);
    assert!(
        !again.status.success()
            && stderr.contains("line 2 of the export")
            && stderr.contains("the key of this partners row is taken in the target database"),
        "{stderr}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dated = |scope: feedpub::domain::FeedScope| {
        runtime.block_on(async {
            use feedpub::storage::{PostgresStore, SqliteStore, Store};
            let store: Box<dyn Store> = match database_url {
                Some(url) => Box::new(PostgresStore::connect(url).await.unwrap()),
                None => Box::new(SqliteStore::open(&target).await.unwrap()),
            };
            // The whole history as one page: full, so an archive page.
            let now = chrono::Utc::now();
            let history = store
                .feed_content(&scope, now, 50, chrono::TimeDelta::days(7))
                .await
                .unwrap()
                .archived;
            let page = store
                .archive_page(&scope, 1, history.max(1), now)
                .await
                .unwrap();
            assert_eq!(page.pages, usize::from(history > 0), "{scope:?}");
            store.close().await;
            (page.articles.len(), page.last_change)
        })
    };
    let all = || dated(feedpub::domain::FeedScope::All);
    let (before, stored_dated) = all();
    let importing = chrono::Utc::now();
    // Another site's identity among the rows: the database keeps its own, the first's.
    let first_site = first
        .lines()
        .find(|l| l.contains(r#""table":"site_identity""#))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]["atom_id_base"].clone()
        })
        .expect("the export carries its site");
    let second = format!(
        "{second}{}\n",
        serde_json::json!({"table": "site_identity",
            "row": {"one": 1, "atom_id_base": "https://other.example/"}})
    );
    import("second.jsonl", &second, &["--allow-non-empty"]);
    let site = runtime.block_on(async {
        use feedpub::storage::{PostgresStore, SqliteStore, Store};
        let store: Box<dyn Store> = match database_url {
            Some(url) => Box::new(PostgresStore::connect(url).await.unwrap()),
            None => Box::new(SqliteStore::open(&target).await.unwrap()),
        };
        let site = store.atom_id_base("https://asked.example/").await.unwrap();
        store.close().await;
        site
    });
    assert_eq!(site, first_site.as_str().unwrap());
    let (after, merged_dated) = all();
    assert!(
        after > before,
        "{before} shown before the second import, {after} after"
    );
    assert!(
        merged_dated >= Some(importing) && stored_dated < Some(importing),
        "{stored_dated:?} then {merged_dated:?}, import at {importing}"
    );
    // A byline alone, for an article stored before: the author's pages shift too.
    let by_author = || dated(feedpub::domain::FeedScope::author(&author));
    let (before, _) = by_author();
    let importing = chrono::Utc::now();
    import("third.jsonl", &third, &["--allow-non-empty"]);
    let (after, bylined) = by_author();
    assert_eq!(after, before + 1, "{author}");
    assert!(
        bylined >= Some(importing),
        "{author}: {bylined:?}, import at {importing}"
    );
}

/// `feedpub ARGS… --data-dir DATA` in `cwd`, its standard output `stdout`.
fn run_into(cwd: &Path, data: &Path, args: &[&str], stdout: Stdio) -> std::process::Output {
    let child = feedpub(cwd)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("feedpub starts");
    child.wait_with_output().expect("feedpub ends")
}

/// A pipe whose reader is gone before the command writes (`| head -1` that has its line).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}

/// A partner command whose output cannot be written fails with one line that says so, and,
/// when it made a change (a new token, lost with the output), that the change stands and how
/// to get a token that can be used; a command that changed nothing ends quietly when its
/// reader stopped reading. Never a panic.
#[test]
fn a_partner_command_that_cannot_write_its_output_says_what_it_did_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // (command, what the line must say when the output is lost: None when it changed
    // nothing)
    let cases = |name: &'static str| {
        [
            (
                vec!["partner", "add", name, "--section", "politics"],
                Some(format!("partner {name} was created")),
            ),
            (
                vec!["partner", "rotate", name],
                Some(format!("partner {name} was given a new token")),
            ),
            (vec!["partner", "list"], None),
            (vec!["audit", "--limit", "100000"], None),
        ]
    };
    for (name, stdout) in [("wire", full_disk as fn() -> Stdio), ("desk", closed_pipe)] {
        for (args, says) in cases(name) {
            let output = run_into(dir.path(), &data, &args, stdout());
            let stderr = text(&output.stderr);
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            if name == "desk" && says.is_none() {
                assert!(output.status.success(), "{args:?}: {stderr}");
                assert_eq!(stderr, "", "{args:?}");
                continue;
            }
            assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
            assert!(
                lines[0].starts_with("feedpub: cannot write the output: "),
                "{args:?}: {stderr}"
            );
            if let Some(says) = says {
                let rotate = format!("`feedpub partner rotate {name}`");
                assert!(
                    lines[0].contains(&says) && lines[0].contains(&rotate),
                    "{args:?}: {stderr}"
                );
            }
        }
        // The way out the message gives works: a token that the partner can use.
        token_of(&common::binary::on_data(
            dir.path(),
            &data,
            &["partner", "rotate", name],
        ));
    }
}

/// A stderr that cannot take a line (a full disk, a reader gone: `2>&1 | head -1`) loses
/// the messages, not the command: each error ends with the exit code it has when its line
/// is read, and `serve` logs into it, serves the sample edition and stops cleanly. Never a
/// panic (exit code 101).
#[test]
fn a_stderr_that_cannot_be_written_loses_the_messages_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 4] = [
        &["publsh"],
        &["migrate", "--data-dir", "/dev/null/data"],
        &["get", "an-id", "--server", "http://127.0.0.1:1"],
        &[
            "get",
            "an-id",
            "--token",
            "fp_x",
            "--server",
            "http://127.0.0.1:1",
        ],
    ];
    for args in commands {
        let read = run(feedpub(dir.path()).args(args));
        let said = text(&read.stderr);
        assert!(said.starts_with("feedpub: "), "{args:?}: {said}");
        let code = read.status.code();
        assert!(matches!(code, Some(1..=4)), "{args:?}: {code:?} {said}");
        for stderr in [full_disk as fn() -> Stdio, closed_pipe] {
            let lost = feedpub(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(stderr())
                .status()
                .expect("feedpub runs");
            assert_eq!(lost.code(), code, "{args:?}");
        }
    }

    for (name, stderr) in [
        ("full", full_disk as fn() -> Stdio),
        ("closed", closed_pipe),
    ] {
        let cwd = dir.path().join(name);
        std::fs::create_dir(&cwd).unwrap();
        let mut server = ChildGuard(
            feedpub(&cwd)
                .args(["serve", "--demo", "--grpc-addr", "127.0.0.1:0"])
                .args(["--http-addr", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(stderr())
                .spawn()
                .expect("feedpub serve starts"),
        );
        // The last article of the sample edition written into the feed: the server went
        // through start-up and every publish, logging all along.
        let feed = cwd.join("feeds/all/rss.xml");
        let start = Instant::now();
        while !std::fs::read_to_string(&feed)
            .is_ok_and(|f| f.contains("右玉县农旅融合助力乡村振兴"))
        {
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!("serve with a {name} stderr ended: {status}");
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{name}: the feed was never written"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(&server.0, "TERM");
        let status = exit_within(&mut server.0, DEADLINE).expect("stopped");
        assert!(status.success(), "serve with a {name} stderr: {status}");
    }
}

/// `import` into the data folder of a running server is refused, naming the folder, and
/// stores nothing: the server would never show the rows (it learns of its own writes only).
#[test]
fn an_import_into_a_running_servers_data_folder_is_refused() {
    use common::binary::{ServeOptions, ServeProcess};
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let data = dir.path().join("running");
    let mut server = ServeProcess::start(ServeOptions::new(&data, &dir.path().join("feeds")));
    server.wait_ready();
    let output = run(feedpub(dir.path())
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a feedpub serve is running on the data folder")
            && stderr.contains(data.to_str().unwrap()),
        "{stderr}"
    );
    server.kill();
    // Nothing was stored: the folder, free now, takes the whole export.
    let output = run(feedpub(dir.path())
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Imports `dump` into a new SQLite database in `dir/name`.
fn import_dump(dir: &Path, name: &str, dump: &[u8]) -> std::process::Output {
    let file = dir.join(format!("{name}.jsonl"));
    std::fs::write(&file, dump).unwrap();
    run(feedpub(dir)
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.join(name)))
}

/// An export ends with the number of rows of each table: one cut short at a line break
/// (`head -n 100`), or with a row taken out, is refused naming what is missing, and nothing
/// of it is stored.
#[test]
fn an_export_cut_short_or_missing_rows_is_refused_and_nothing_of_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let lines: Vec<&str> = export.lines().collect();
    let article = lines
        .iter()
        .position(|l| l.contains(r#""table":"articles""#))
        .unwrap();
    let cut = lines[..lines.len() / 2].join("\n") + "\n";
    let mut missing = lines.clone();
    missing.remove(article);
    let missing = missing.join("\n") + "\n";
    let after_end = format!("{export}{}\n", lines[article]);
    for (name, dump, says) in [
        ("cut", cut.as_str(), format!("line {}", lines.len() / 2 + 1)),
        ("cut", &missing, "rows of articles".to_owned()),
        (
            "cut",
            &after_end,
            format!("follows the end of the export (line {})", lines.len()),
        ),
    ] {
        let refused = import_dump(dir.path(), name, dump.as_bytes());
        let stderr = text(&refused.stderr);
        assert!(!refused.status.success(), "{says}: {stderr}");
        assert!(stderr.contains(&says), "{says}: {stderr}");
        if name == "cut" && dump == cut {
            assert!(stderr.contains("cut short"), "{stderr}");
        }
    }
    // Nothing was stored: the same folder takes the whole export, as only an empty one does.
    let whole = import_dump(dir.path(), "cut", export.as_bytes());
    assert!(whole.status.success(), "{}", text(&whole.stderr));
}

/// An export cut in the middle of a character, or saved with a byte order mark, is
/// refused naming the line, and the mark.
#[test]
fn an_export_that_is_not_utf8_or_starts_with_a_bom_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let export = sample_edition_export(dir.path());
    let lines: Vec<&str> = export.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(r#""table":"articles""#))
        .unwrap();
    // Up to the middle of the first Chinese character of that line.
    let line_start = lines[..at].iter().map(|l| l.len() + 1).sum::<usize>();
    let character = lines[at].find(|c: char| !c.is_ascii()).unwrap();
    let cut = &export.as_bytes()[..line_start + character + 1];
    let refused = import_dump(dir.path(), "cut", cut);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("line {} of the export", at + 1)) && stderr.contains("UTF-8"),
        "{stderr}"
    );

    let marked = format!("\u{feff}{export}");
    let refused = import_dump(dir.path(), "marked", marked.as_bytes());
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 1 of the export") && stderr.contains("byte order mark"),
        "{stderr}"
    );
}

/// A mistyped data folder is not a new, empty database: `export`, `audit` and the partner
/// commands but `add` refuse a folder without one, naming the file, and create nothing.
/// Nor do they migrate: a database whose schema is not up to date is refused.
#[test]
fn export_audit_and_partner_commands_refuse_a_data_folder_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    for args in [
        &["export"][..],
        &["audit"],
        &["partner", "list"],
        &["partner", "revoke", "wire"],
        &["partner", "rotate", "wire"],
        &["partner", "grant", "wire", "--section", "politics"],
        &["partner", "deny", "wire", "--embargoed"],
    ] {
        let output = common::binary::on_data(dir.path(), &typo, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(typo.join("feedpub.sqlite3").to_str().unwrap()),
            "{args:?}: {stderr}"
        );
        // Named once: the file looked for says the folder.
        let named = stderr.matches(typo.to_str().unwrap()).count();
        assert_eq!(named, 1, "{args:?}: {stderr}");
        // One line, as the client's commands say theirs: the message, then its causes.
        assert!(stderr.starts_with("feedpub: "), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!typo.exists(), "{args:?} created the folder");
    }
    // A data folder that cannot be looked into (here a file) is not said to hold no
    // database: the error is why it cannot be looked into.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for args in [&["export"][..], &["partner", "list"]] {
        let output = common::binary::on_data(dir.path(), &file, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("feedpub: ")
                && stderr.contains("cannot look for the database ")
                && stderr.contains("a-file/feedpub.sqlite3: Not a directory"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.matches("a-file").count(), 1, "{args:?}: {stderr}");
    }
    // An empty file is a database emptied (truncated, or copied before it was written),
    // as feedpub never leaves one: named so and left as it is by every command, not
    // migrated into a new, empty database (and feeds) nor said to need `migrate`.
    std::fs::create_dir(&typo).unwrap();
    std::fs::write(typo.join("feedpub.sqlite3"), "").unwrap();
    let dump = dir.path().join("dump.jsonl");
    std::fs::write(&dump, "").unwrap();
    let dump = dump.to_str().unwrap();
    for args in [
        &["export"][..],
        &["audit"],
        &["partner", "list"],
        &["partner", "revoke", "wire"],
        &["partner", "add", "wire", "--all-sections"],
        &["migrate"],
        &["import", dump],
    ] {
        let output = common::binary::on_data(dir.path(), &typo, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        let named = format!(
            "{} is an empty file (0 bytes), not a database feedpub left",
            typo.join("feedpub.sqlite3").display()
        );
        assert!(
            stderr.contains(&named) && !stderr.contains("migrate` first"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("export") || args[0] == "export",
            "{args:?} is not an export: {stderr}"
        );
        assert_eq!(
            std::fs::metadata(typo.join("feedpub.sqlite3"))
                .unwrap()
                .len(),
            0,
            "{args:?}"
        );
        assert!(!typo.join("feedpub.sqlite3-wal").exists(), "{args:?}");
    }
    // A WAL beside it does not save it (SQLite opening an empty file discards the WAL): it
    // is refused all the same, and the WAL left as it was.
    let wal: Vec<u8> = (0..8192_u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(typo.join("feedpub.sqlite3-wal"), &wal).unwrap();
    for args in [&["migrate"][..], &["partner", "list"]] {
        let output = common::binary::on_data(dir.path(), &typo, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is an empty file (0 bytes)"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(typo.join("feedpub.sqlite3-wal")).unwrap(),
            wal,
            "{args:?}"
        );
    }
    std::fs::remove_file(typo.join("feedpub.sqlite3-wal")).unwrap();
    // A file that is not a database at all is named so, not taken for one to migrate, and
    // left as it was, by `migrate` as well.
    let garbage: Vec<u8> = (0..4096_u32).map(|n| (n * 7919 % 251) as u8).collect();
    std::fs::write(typo.join("feedpub.sqlite3"), &garbage).unwrap();
    for args in [
        &["export"][..],
        &["audit"],
        &["partner", "list"],
        &["migrate"],
    ] {
        let output = common::binary::on_data(dir.path(), &typo, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("file is not a database") && !stderr.contains("migrate` first"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(typo.join("feedpub.sqlite3")).unwrap(),
            garbage,
            "{args:?}"
        );
    }
}

/// Commands that create the database, run at once on a new data folder, each get it: none
/// finds a file another is making and takes it for a database emptied (the database is
/// made under a name of its own and linked into place with its first page).
#[test]
fn commands_creating_the_database_at_once_both_succeed() {
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (cwd, folder) = (dir.path().to_owned(), data.clone());
        let other = std::thread::spawn(move || {
            let args: &[&str] = match round % 2 {
                0 => &["migrate"],
                _ => &["partner", "add", "county", "--section", "rural"],
            };
            common::binary::on_data(&cwd, &folder, args)
        });
        let added = common::binary::on_data(
            dir.path(),
            &data,
            &["partner", "add", "wire", "--all-sections"],
        );
        let other = other.join().unwrap();
        for output in [&added, &other] {
            assert!(
                output.status.success(),
                "round {round}: {}",
                text(&output.stderr)
            );
        }
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains(".new-"))
            .collect();
        assert!(names.is_empty(), "round {round}: left behind: {names:?}");
    }
}

/// What a process making the database left when it stopped part-way (a database under a
/// name of its own beside the real one) is removed by the next that makes it, once it is an
/// hour old; one younger, which a process may still be making, is left.
#[test]
fn a_new_database_abandoned_part_way_is_removed_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let old = data.join("feedpub.sqlite3.new-0123456789abcdef");
    let young = data.join("feedpub.sqlite3.new-fedcba9876543210");
    for path in [&old, &young] {
        std::fs::write(path, vec![0_u8; 4096]).unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let migrated = common::binary::on_data(dir.path(), &data, &["migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    assert!(!old.exists(), "the abandoned one is removed");
    assert!(young.exists(), "one that may still be made is left");
}

/// A data folder that cannot be made is named, with why, by the commands that create the
/// database: not as "error communicating with database".
#[test]
fn a_data_folder_that_cannot_be_made_is_named_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    for args in [
        &["migrate"][..],
        &["partner", "add", "wire", "--all-sections"],
    ] {
        let output = common::binary::on_data(dir.path(), &data, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot create {}: Not a directory",
                data.display()
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// A database migrated by a newer feedpub is named so by every command that opens it, the
/// server's start among them, not with the migrator's "previously applied but is missing",
/// and none changes it.
#[test]
fn a_database_migrated_by_a_newer_feedpub_is_named_so_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    token_of(&common::binary::on_data(
        dir.path(),
        &data,
        &["partner", "add", "wire", "--all-sections"],
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}", data.join("feedpub.sqlite3").display());
    let rows = |sql: &'static str| {
        runtime.block_on(async {
            use sqlx::Connection as _;
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let count: i64 = sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap();
            db.close().await.unwrap();
            count
        })
    };
    rows(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (999999, 'from a newer feedpub', true, x'00', 0) RETURNING version",
    );
    let migrations = rows("SELECT COUNT(*) FROM _sqlx_migrations");
    for args in [
        &["migrate"][..],
        &["serve"],
        &["export"],
        &["audit"],
        &["partner", "list"],
    ] {
        let output = common::binary::on_data(dir.path(), &data, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(
                "the database holds schema migration 999999, which this feedpub does not know"
            ),
            "{args:?}: {stderr}"
        );
        assert_eq!(rows("SELECT COUNT(*) FROM _sqlx_migrations"), migrations);
    }
}

/// A PostgreSQL database out of reach is named with its cause at once by every command
/// that opens it, `serve` too: not after a pool's wait, as "pool timed out".
#[test]
fn every_command_names_a_postgresql_database_out_of_reach_and_why() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: connections to it are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("postgres://feedpub:secret@{closed}/feedpub");
    let export = dir.path().join("export.jsonl");
    std::fs::write(&export, "{\"format\":\"feedpub-export\",\"version\":6}\n").unwrap();
    let export = export.to_str().unwrap();
    for args in [
        &["export"][..],
        &["import", export],
        &["migrate"],
        &["audit"],
        &["partner", "list"],
        &["partner", "add", "wire", "--all-sections"],
        &["partner", "revoke", "wire"],
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
    ] {
        let output = run(feedpub(dir.path())
            .args(args)
            .args(["--database-url", &url]));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("postgres://feedpub:***@{closed}/feedpub"))
                && stderr.contains("Connection refused"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("secret"), "{args:?}: {stderr}");
    }
}

/// `partner deny` of a section that is neither configured nor held by the partner is a typo:
/// refused naming it, as `grant` refuses one; a section the partner holds can be denied
/// even once it is no longer configured.
#[test]
fn partner_deny_refuses_a_section_neither_configured_nor_held() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wider = dir.path().join("wider.toml");
    std::fs::write(
        &wider,
        format!(
            "{}\n[[sections]]\nslug = \"sport\"\ntitle = \"体育\"\n",
            feedpub::config::EMBEDDED_CONFIG
        ),
    )
    .unwrap();
    let on = |args: &[&str]| common::binary::on_data(dir.path(), &data, args);
    token_of(&on(&[
        "partner",
        "add",
        "wire",
        "--section",
        "politics",
        "--section",
        "sport",
        "--config",
        wider.to_str().unwrap(),
    ]));
    let typo = common::binary::error_of(&on(&["partner", "deny", "wire", "--section", "nosuch"]));
    assert!(typo.contains("\"nosuch\""), "{typo}");
    // Held, though the embedded configuration has no such section any more.
    let held = common::binary::stdout_of(&on(&["partner", "deny", "wire", "--section", "sport"]));
    assert!(held.contains("denied"), "{held}");
    let listed = common::binary::stdout_of(&on(&["partner", "list"]));
    assert!(
        listed.contains("politics") && !listed.contains("sport"),
        "{listed}"
    );
}

/// `serve --demo` after `partner revoke newsroom` says the demo's partner is revoked and
/// what to do, rather than that it already exists.
#[test]
fn serve_demo_with_its_partner_revoked_says_so_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let on = |args: &[&str]| common::binary::on_data(dir.path(), &data, args);
    token_of(&on(&["partner", "add", "newsroom", "--all-sections"]));
    common::binary::stdout_of(&on(&["partner", "revoke", "newsroom"]));
    let output = on(&[
        "serve",
        "--demo",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--feeds-dir",
        dir.path().join("feeds").to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"newsroom\"")
            && stderr.contains("is revoked")
            && stderr.contains("without --demo")
            && !stderr.contains("already exists"),
        "{stderr}"
    );
}

/// A second `serve` on the data folder of a running one is refused, naming the folder, and
/// takes nothing over; once the first has stopped, however it stopped, the folder is free.
#[test]
fn a_second_server_on_a_running_servers_data_folder_is_refused() {
    use common::binary::{ServeOptions, ServeProcess, run_within};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = ServeProcess::start(ServeOptions::new(&data, &dir.path().join("feeds")));
    first.wait_ready();
    let second = |feeds: &str| {
        run_within(
            feedpub(dir.path())
                .arg("serve")
                .arg("--data-dir")
                .arg(&data)
                .arg("--feeds-dir")
                .arg(dir.path().join(feeds))
                .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]),
            DEADLINE,
        )
    };
    let output = second("other-feeds");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another feedpub serve is running on the data folder"),
        "{stderr}"
    );
    assert!(stderr.contains(data.to_str().unwrap()), "{stderr}");
    assert!(
        !dir.path().join("other-feeds").exists(),
        "the refused server built feeds"
    );
    // The first still serves; killed, it leaves the folder free.
    assert!(first.is_running(), "the first server stopped");
    first.kill();
    let mut again = ServeProcess::start(ServeOptions::new(&data, &dir.path().join("feeds")));
    again.wait_ready();
}

/// A folder under `feeds/` holding the feeds of a section no longer configured is warned of
/// at start, and left where it is; other folders are not the server's business.
#[test]
fn the_feeds_of_a_section_no_longer_configured_are_warned_of() {
    use common::binary::{ServeOptions, ServeProcess};
    let dir = tempfile::tempdir().unwrap();
    let feeds = dir.path().join("feeds");
    for (folder, file) in [("obituaries", "atom.xml"), ("assets", "logo.png")] {
        std::fs::create_dir_all(feeds.join(folder)).unwrap();
        std::fs::write(feeds.join(folder).join(file), "x").unwrap();
    }
    let mut server = ServeProcess::start(ServeOptions::new(&dir.path().join("data"), &feeds));
    server.wait_ready();
    let warned: Vec<String> = server
        .log()
        .lines()
        .filter(|line| line.contains("a section no longer configured"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warned.len(), 1, "{}", server.log());
    assert!(warned[0].contains("obituaries"), "{warned:?}");
    assert!(
        feeds.join("obituaries/atom.xml").exists(),
        "left to the operator"
    );
    server.kill();
}

/// A second `serve` writing the feeds folder of a running one (from a data folder of its
/// own) is refused and leaves its files as they were; a feeds folder that is the data
/// folder, or holds it, or is inside it, is refused before anything is written.
#[test]
fn a_feeds_folder_is_written_by_one_server_and_apart_from_the_data_folder() {
    use common::binary::{ServeOptions, ServeProcess, run_within};
    let dir = tempfile::tempdir().unwrap();
    let feeds = dir.path().join("feeds");
    let mut first = ServeProcess::start(ServeOptions::new(&dir.path().join("data"), &feeds));
    first.wait_ready();
    // Where its settings came from, and the folder it writes, are in its log.
    let said = first.find_in_log(|line| {
        line.contains("configuration from the embedded sample configuration")
            .then(|| line.contains(feeds.to_str().unwrap()))
    });
    assert_eq!(said, Some(true), "{}", first.log());
    let serve = |data: &std::path::Path, feeds: &std::path::Path| {
        run_within(
            feedpub(dir.path())
                .arg("serve")
                .arg("--data-dir")
                .arg(data)
                .arg("--feeds-dir")
                .arg(feeds)
                .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]),
            DEADLINE,
        )
    };
    let all = feeds.join("all/atom.xml");
    let before = std::fs::read(&all).unwrap();
    let output = serve(&dir.path().join("other-data"), &feeds);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another feedpub serve is writing the feeds folder")
            && stderr.contains(feeds.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&all).unwrap(),
        before,
        "the refused server wrote feeds"
    );
    assert!(first.is_running(), "the first server stopped");
    first.kill();

    for (data, feeds) in [
        ("same", "same"),
        ("outer/data", "outer"),
        ("data2", "data2/feeds"),
    ] {
        let (data, feeds) = (dir.path().join(data), dir.path().join(feeds));
        let output = serve(&data, &feeds);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("one folder or one holds the other"),
            "{stderr}"
        );
        assert!(
            !feeds.join("all").exists(),
            "feeds written beside the database"
        );
        if feeds.ends_with("data2/feeds") {
            assert!(
                !feeds.exists(),
                "a feeds folder made inside the data folder"
            );
        }
    }
}
