//! Fault injection (issue 8, item 2): the real `feedpub serve` binary meets write errors on
//! its feeds and on its database, and must keep serving every acknowledged change (from
//! memory while its files cannot be written; nothing changes while the database refuses
//! writes), report the fault (`/healthz` detail, the `feedpub_fault` metric, a log line, an
//! error status to the partner whose publish failed), leave no torn, empty or temporary file
//! under `feeds/`, and recover by itself once writes work again: then `feeds/` holds what
//! is served.
//!
//! Two ways to make writes fail:
//! - a file size limit (RLIMIT_FSIZE, set on the running server with prlimit(2), no
//!   privilege needed): writes past it fail with EFBIG, and SIGXFSZ must not kill the server;
//! - a full disk: small tmpfs mounts for `data/` and `feeds/`, filled with a ballast file
//!   (needs root and a working `mount`; skipped with a message otherwise, except in CI).

mod common;

use common::binary::{Running, ServeOptions, ServeProcess};
use common::{DEADLINE, authed, ts};
use feedpub::grpc::proto::{self, PublishArticleRequest, PublishArticleResponse};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;

/// A politics article whose body is about `size` bytes of text.
fn article(id: &str, title: &str, size: usize) -> proto::Article {
    let sentence = "右玉县农旅融合助力乡村振兴，朔州日报记者现场报道。";
    let paragraph = sentence.repeat(40);
    let count = size / paragraph.len() + 1;
    let content_text = (0..count)
        .map(|n| format!("{n} {paragraph}"))
        .collect::<Vec<_>>()
        .join("\n\n");
    proto::Article {
        id: id.to_owned(),
        section: "politics".to_owned(),
        title: title.to_owned(),
        authors: Vec::new(),
        content_text,
        publish_time: Some(ts(1_686_096_000)),
        ..Default::default()
    }
}

async fn publish(
    running: &Running,
    token: &str,
    article: proto::Article,
) -> Result<PublishArticleResponse, tonic::Status> {
    let request = PublishArticleRequest {
        article: Some(article),
        ..Default::default()
    };
    running
        .client()
        .await
        .publish_article(authed(token, request))
        .await
        .map(tonic::Response::into_inner)
}

/// Checks that a publish was refused for a fault, not for what it sent: `UNAVAILABLE` or
/// `RESOURCE_EXHAUSTED`, with a message that names `cause`.
fn assert_refused_for(refused: &tonic::Status, cause: &str) {
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::ResourceExhausted),
        "{refused:?}"
    );
    assert!(refused.message().contains(cause), "{cause}: {refused:?}");
}

async fn get(running: &Running, path: &str) -> (u16, String) {
    let response = reqwest::get(running.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Polls `path` until `done` accepts its body; fails after the deadline with the log.
async fn wait_for(
    server: &ServeProcess,
    running: &Running,
    path: &str,
    done: impl Fn(&str) -> bool,
) {
    let start = Instant::now();
    loop {
        let (_, body) = get(running, path).await;
        if done(&body) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{path} never reached the expected state:\n{body:.2000}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the `feedpub_fault` gauge of `component`.
async fn fault_gauge(running: &Running, component: &str) -> Option<f64> {
    let (_, metrics) = get(running, "/metrics").await;
    common::series_value(
        &metrics,
        &format!("feedpub_fault{{component=\"{component}\"}}"),
    )
}

/// Waits until the server has counted a write tried for the storage fault with `outcome`.
async fn wait_for_probes(server: &ServeProcess, running: &Running, outcome: &str) {
    let series = format!("feedpub_storage_probes_total{{outcome=\"{outcome}\"}}");
    wait_for(server, running, "/metrics", |metrics| {
        common::series_value(metrics, &series).is_some_and(|n| n >= 1.0)
    })
    .await;
}

/// What must hold while the feeds' files cannot be written: every file under `feeds/` is
/// whole (the last version written).
async fn assert_files_whole(server: &ServeProcess) {
    common::feeds_dir::check_whole(&server.feeds_dir)
        .await
        .unwrap_or_else(|p| panic!("{p:#?}\nlog:\n{}", server.log()));
}

/// What must hold once writes work: every file under `feeds/` is whole and, once the server
/// has written what it serves (a few milliseconds after each change), the same as served.
async fn assert_feeds_whole(server: &ServeProcess, running: &Running) {
    let start = Instant::now();
    loop {
        match common::feeds_dir::check(&server.feeds_dir, running).await {
            Ok(_) => return,
            Err(p) if start.elapsed() > DEADLINE => {
                panic!("{p:#?}\nlog:\n{}", server.log())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Bodies of the politics and all feeds in every format, keyed by path.
async fn politics_feeds(running: &Running) -> Vec<(String, String)> {
    let mut bodies = Vec::new();
    for scope in ["politics", "all"] {
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            let path = format!("/feeds/{scope}/{file}");
            let (status, body) = get(running, &path).await;
            assert_eq!(status, 200, "{path}");
            bodies.push((path, body));
        }
    }
    bodies
}

/// `feedpub serve` on SQLite in a fresh folder (`data/` and `feeds/` in it), with the
/// test partners, ready.
async fn started() -> (tempfile::TempDir, common::Tokens, ServeProcess, Running) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let feeds_dir = dir.path().join("feeds");
    let tokens = common::add_partners(&data_dir).await;
    let mut server = ServeProcess::start(ServeOptions::new(&data_dir, &feeds_dir));
    let running = server.wait_ready();
    (dir, tokens, server, running)
}

/// The soft and hard RLIMIT_FSIZE of process `pid`, after setting the soft one to `soft`
/// (`None`: back to the hard limit).
fn set_file_size_limit(pid: u32, soft: Option<u64>) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads `new` and writes `old`, both valid for the call.
    let read = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(read, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft.unwrap_or(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let set = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// True when the process catches or ignores SIGXFSZ, from `/proc/<pid>/status`.
fn handles_sigxfsz(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap_or(0)
    };
    let bit = 1u64 << (libc::SIGXFSZ - 1);
    (mask("SigIgn:") | mask("SigCgt:")) & bit != 0
}

/// Truncates the write-ahead log (the test's own connection), so the server's next commits
/// are written at its start, far below a file size limit that feed documents exceed.
async fn truncate_wal(data_dir: &Path) {
    let mut conn = common::database_connection(data_dir).await;
    // A reader of the server may hold the WAL for a moment: try again until it lets go.
    let start = Instant::now();
    loop {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if busy == 0 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the WAL was never free to truncate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = sqlx::Connection::close(conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_past_a_file_size_limit_are_reported_survived_and_recovered_from() {
    let (dir, tokens, mut server, running) = started().await;
    let data_dir = dir.path().join("data");
    let pid = server.pid();
    assert!(
        handles_sigxfsz(pid),
        "SIGXFSZ would kill the server at the first write past a file size limit"
    );

    // Four long politics articles: the politics and all feeds are several hundred KB each.
    for n in 0..4 {
        let title = format!("长篇报道 {n}");
        publish(
            &running,
            &tokens.newsroom,
            article(&format!("long-{n}"), &title, 100_000),
        )
        .await
        .expect("publishing before any fault");
    }
    wait_for(&server, &running, "/feeds/politics/rss.xml", |b| {
        b.contains("长篇报道 3")
    })
    .await;
    assert_eq!(get(&running, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(fault_gauge(&running, "feeds").await, Some(0.0));

    // Feed writes fail, database writes still work: the limit (256 KiB) is above every
    // offset the next commit writes at in a freshly truncated WAL, below the feed sizes.
    assert_feeds_whole(&server, &running).await;
    truncate_wal(&data_dir).await;
    set_file_size_limit(pid, Some(256 * 1024));
    let acknowledged = publish(
        &running,
        &tokens.newsroom,
        article("short-1", "短讯一", 100),
    )
    .await
    .expect("the database still takes writes; only feeds fail");
    assert!(acknowledged.article.is_some());
    wait_for(&server, &running, "/healthz", |b| {
        b.starts_with("degraded") && b.contains("feeds: ")
    })
    .await;
    let (status, health) = get(&running, "/healthz").await;
    assert_eq!(status, 200, "the feeds are still served");
    assert!(
        health.contains("feeds: ") && health.contains("File too large"),
        "{health}"
    );
    assert_eq!(fault_gauge(&running, "feeds").await, Some(1.0));
    // The write-ahead log took the write, but copying it into the database file writes
    // past the limit (the file is larger, and the write's pages are not all near its
    // start): a fault of its own, while writes still succeed.
    wait_for(&server, &running, "/healthz", |b| b.contains("wal: ")).await;
    assert_eq!(fault_gauge(&running, "wal").await, Some(1.0));
    // Logged before the fault is reported, but read from the server's stderr by another
    // thread of this test: waited for, not looked up once.
    server.wait_for_log("the feed write error", |l| {
        l.contains("cannot write the files of a feed").then_some(())
    });
    // The acknowledged article is served, from memory, while writing keeps failing (a
    // second attempt at least); the files on disk stay whole.
    for path in ["/feeds/politics/rss.xml", "/feeds/all/feed.json"] {
        wait_for(&server, &running, path, |b| b.contains("短讯一")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        server.is_running(),
        "the server survived EFBIG:\n{}",
        server.log()
    );
    let retries = server
        .log()
        .matches("cannot write the files of a feed")
        .count();
    assert!(
        retries >= 2,
        "written again after a failure:\n{}",
        server.log()
    );
    let (status, rss) = get(&running, "/feeds/politics/rss.xml").await;
    assert_eq!(status, 200);
    assert!(rss.contains("短讯一"), "still served");
    assert_files_whole(&server).await;
    let served = politics_feeds(&running).await;

    // Database writes fail too: nothing is acknowledged, the partner is told why.
    set_file_size_limit(pid, Some(0));
    let refused = publish(
        &running,
        &tokens.newsroom,
        article("short-2", "短讯二", 100),
    )
    .await
    .expect_err("no write can succeed");
    assert_refused_for(&refused, "storage");
    let (_, health) = get(&running, "/healthz").await;
    assert!(health.contains("storage: "), "{health}");
    assert_eq!(fault_gauge(&running, "storage").await, Some(1.0));
    server.wait_for_log("the storage fault", |l| {
        l.contains("fault: storage failing").then_some(())
    });
    assert_eq!(
        politics_feeds(&running).await,
        served,
        "nothing refused is served"
    );
    assert_files_whole(&server).await;
    // The server tries a write every few seconds meanwhile: it fails too, and the fault
    // stands.
    wait_for_probes(&server, &running, "failed").await;
    assert_eq!(fault_gauge(&running, "storage").await, Some(1.0));

    // Space returns: the fault clears by itself, with no publish to tell, and the next
    // publish succeeds and every feed catches up.
    set_file_size_limit(pid, None);
    wait_for(&server, &running, "/healthz", |b| !b.contains("storage: ")).await;
    assert_eq!(fault_gauge(&running, "storage").await, Some(0.0));
    wait_for_probes(&server, &running, "ok").await;
    publish(
        &running,
        &tokens.newsroom,
        article("short-2", "短讯二", 100),
    )
    .await
    .expect("publishing once writes work again");
    for path in [
        "/feeds/politics/rss.xml",
        "/feeds/all/atom.xml",
        "/feeds/all/feed.json",
    ] {
        wait_for(&server, &running, path, |b| {
            b.contains("短讯一") && b.contains("短讯二")
        })
        .await;
    }
    wait_for(&server, &running, "/healthz", |b| b == "ok\n").await;
    assert_eq!(fault_gauge(&running, "feeds").await, Some(0.0));
    assert_eq!(fault_gauge(&running, "storage").await, Some(0.0));
    assert_eq!(fault_gauge(&running, "wal").await, Some(0.0));
    assert_feeds_whole(&server, &running).await;
    assert!(server.is_running());
    server.kill();
    let problems = common::integrity_problems(&data_dir).await;
    assert!(problems.is_empty(), "{problems:?}");
}

/// A tmpfs of `size` mounted at `path` for the life of the value.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts it, or says why it cannot be (not root, or `mount` refused).
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if output.status.success() {
            Ok(Self {
                path: path.to_path_buf(),
            })
        } else {
            Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Fills the file system with a ballast file until a write fails for lack of space.
    fn fill(&self) {
        let mut ballast = std::fs::File::create(self.path.join("ballast")).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; chunk];
            loop {
                match ballast.write_all(&bytes) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", self.path.display()),
                }
            }
        }
    }

    /// Gives the space back.
    fn empty(&self) {
        std::fs::remove_file(self.path.join("ballast")).unwrap();
    }

    /// Mounts it again read-only (`false`) or writable (`true`).
    fn remount(&self, writable: bool) {
        let status = Command::new("mount")
            .args(["-o", if writable { "remount,rw" } else { "remount,ro" }])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount: {status}");
    }
}

/// What was mounted, or `None`, the test skipped (saying why, so as to `what`), where it
/// cannot be: not in CI, which runs as root.
fn mounted_or_skipped<T>(mounted: Result<T, String>, what: &str) -> Option<T> {
    match mounted {
        Ok(mounted) => Some(mounted),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must be able to mount a tmpfs: {why}"
            );
            eprintln!("skipped: {why} (run as root to {what})");
            None
        }
    }
}

/// A SQLite database on a read-only file system, as a clean shutdown leaves it and as a
/// killed server leaves it (its WAL and shared-memory index beside it, through which
/// SQLite could read it): every command that writes, and `serve`, is refused at once and
/// says which file it could not write and why, in the system's words, where SQLite says
/// only that it cannot open the file, or nothing until the first write; `export`, which
/// only reads, exports what is stored.
#[test]
fn a_database_on_a_read_only_file_system_is_named_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Tmpfs::mount(&dir.path().join("disk"), "16m");
    let Some(disk) = mounted_or_skipped(mounted, "mount a read-only file system") else {
        return;
    };
    let clean = disk.path.join("clean");
    let left = disk.path.join("left");
    for data in [&clean, &left] {
        let added = common::binary::on_data(
            dir.path(),
            data,
            &["partner", "add", "wire", "--section", "politics"],
        );
        assert!(added.status.success(), "{added:?}");
    }
    let feeds = dir.path().join("feeds");
    let mut server = ServeProcess::start(ServeOptions::new(&left, &feeds));
    server.wait_ready();
    server.kill();
    assert!(left.join("feedpub.sqlite3-wal").exists());
    assert!(!clean.join("feedpub.sqlite3-wal").exists());
    disk.remount(false);
    for data in [&clean, &left] {
        let data_arg = data.to_str().unwrap();
        let file = data.join("feedpub.sqlite3");
        let why = format!(
            "cannot write {}: Read-only file system",
            file.to_str().unwrap()
        );
        for args in [
            &["partner", "list"][..],
            &["audit"],
            &["migrate"],
            &["import", "/dev/null"],
            &["partner", "add", "wire", "--section", "politics"],
            &[
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ],
        ] {
            let output = common::binary::run(
                common::binary::feedpub(dir.path())
                    .args(args)
                    .args(["--data-dir", data_arg]),
            );
            let stderr = common::binary::text(&output.stderr);
            assert!(!output.status.success(), "{data_arg} {args:?}: {stderr}");
            assert!(stderr.contains(&why), "{data_arg} {args:?}: {stderr}");
        }
        let exported = common::binary::on_data(dir.path(), data, &["export"]);
        assert!(exported.status.success(), "{exported:?}");
        let rows = common::binary::stdout_of(&exported);
        assert!(
            rows.lines()
                .any(|l| l.contains(r#""table":"partners""#) && l.contains("wire")),
            "{rows}"
        );
    }
    disk.remount(true);
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// `feedpub publish` during a storage fault: the server answers each article of the batch
/// `UNAVAILABLE`, and the client sends those again, saying so, until the fault clears; then
/// every line is published, and the run ends as one with no fault would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_rides_out_a_storage_fault_sending_the_articles_again() {
    use std::io::BufRead;
    let (dir, tokens, server, running) = started().await;
    let lines: Vec<String> = (0..5)
        .map(|n| {
            serde_json::json!({
                "id": format!("fault-{n}"),
                "section": "politics",
                "title": format!("故障期间的稿件 {n}"),
                "content_text": "本报讯 右玉县农旅融合助力乡村振兴。",
                "publish_time": "2023-06-07T06:59:00+08:00",
            })
            .to_string()
        })
        .collect();
    let file = dir.path().join("five.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();

    set_file_size_limit(server.pid(), Some(0));
    let mut client = common::binary::feedpub(dir.path())
        .arg("publish")
        .arg(&file)
        .arg("--server")
        .arg(format!("http://{}", running.grpc))
        .env("FEEDPUB_TOKEN", &tokens.newsroom)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = client.stderr.take().unwrap();
    let (said_tx, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if said_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first answer: every article refused for now, and sent again.
    let first = said.recv_timeout(DEADLINE).expect("a line on stderr");
    assert!(
        first.starts_with("feedpub: 5 of lines 1-5: storage failed")
            && first.ends_with("sending them again in 0.5 s"),
        "{first}"
    );
    set_file_size_limit(server.pid(), None);
    let status = common::binary::exit_within(&mut client, DEADLINE).expect("publish ends");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut client.stdout.take().unwrap(), &mut stdout).unwrap();
    let rest: Vec<String> = said.try_iter().collect();
    assert!(status.success(), "{status}: {stdout}\n{rest:?}");
    assert!(
        stdout.starts_with("5 lines: 5 published, 0 updated, 0 unchanged, 0 failed"),
        "{stdout}\n{rest:?}"
    );
    for path in ["/feeds/politics/rss.xml", "/feeds/all/feed.json"] {
        wait_for(&server, &running, path, |b| b.contains("故障期间的稿件 4")).await;
    }

    // A fault that outlasts every attempt ends the run as an unreachable server does
    // (exit code 4), with the line to start again from; the articles stored before are
    // counted, those after it left for the next run.
    set_file_size_limit(server.pid(), Some(0));
    let output = common::binary::run(
        common::binary::feedpub(dir.path())
            .arg("publish")
            .arg(&file)
            .args(["--new-request-ids", "--server"])
            .arg(format!("http://{}", running.grpc))
            .env("FEEDPUB_TOKEN", &tokens.newsroom),
    );
    set_file_size_limit(server.pid(), None);
    let (stdout, stderr) = (
        common::binary::text(&output.stdout),
        common::binary::text(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches("sending them again").count(), 5, "{stderr}");
    assert!(
        stderr.contains("feedpub: the server could not store 5 of lines 1-5 in 6 attempts: "),
        "{stderr}"
    );
    assert!(
        stdout.starts_with("5 lines: 0 published") && stdout.contains("stopped at line 1:"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_survived_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    // Each folder inside its own disk, whose ballast file lies beside it.
    let data_dir = dir.path().join("data-disk/data");
    let feeds_dir = dir.path().join("feeds-disk/feeds");
    let mounted = Tmpfs::mount(&dir.path().join("data-disk"), "16m")
        .and_then(|data| Ok((data, Tmpfs::mount(&dir.path().join("feeds-disk"), "16m")?)));
    let Some((data_disk, feeds_disk)) = mounted_or_skipped(mounted, "simulate a full disk") else {
        return;
    };
    let tokens = common::add_partners(&data_dir).await;
    let mut server = ServeProcess::start(ServeOptions::new(&data_dir, &feeds_dir));
    let running = server.wait_ready();
    publish(
        &running,
        &tokens.newsroom,
        article("first", "第一篇", 2_000),
    )
    .await
    .expect("publishing before any fault");
    wait_for(&server, &running, "/feeds/politics/rss.xml", |b| {
        b.contains("第一篇")
    })
    .await;

    // The feeds' disk is full: the publish is acknowledged (it is durable) and served from
    // memory, the files are not rewritten and stay whole; written once there is room.
    assert_feeds_whole(&server, &running).await;
    // The stylesheet's files gone (an upgrade brings a new one): the start below cannot
    // write them, and writes them once there is room.
    for coding in ["", ".gz", ".br"] {
        std::fs::remove_file(feeds_dir.join(format!("feed.xsl{coding}"))).unwrap();
    }
    feeds_disk.fill();
    publish(
        &running,
        &tokens.newsroom,
        article("second", "第二篇", 2_000),
    )
    .await
    .expect("the database has room; only the feeds' disk is full");
    wait_for(&server, &running, "/healthz", |b| {
        b.starts_with("degraded") && b.contains("No space left on device")
    })
    .await;
    assert_eq!(fault_gauge(&running, "feeds").await, Some(1.0));
    wait_for(&server, &running, "/feeds/politics/atom.xml", |b| {
        b.contains("第二篇")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_files_whole(&server).await;
    let on_disk = std::fs::read_to_string(server.feeds_dir.join("politics/atom.xml")).unwrap();
    assert!(
        !on_disk.contains("第二篇"),
        "nothing could be written to a full disk"
    );
    // Started again while the disk is still full (after an upgrade, say): it starts,
    // serves its feeds from memory and says why, rather than exit.
    server.kill();
    let mut server = ServeProcess::start(ServeOptions::new(&data_dir, &feeds_dir));
    let running = server.wait_ready();
    wait_for(&server, &running, "/healthz", |b| {
        b.starts_with("degraded") && b.contains("No space left on device")
    })
    .await;
    wait_for(&server, &running, "/feeds/politics/atom.xml", |b| {
        b.contains("第二篇")
    })
    .await;
    let (status, stylesheet) = get(&running, "/feeds/feed.xsl").await;
    assert_eq!(status, 200, "the stylesheet is served from memory");
    assert!(!feeds_dir.join("feed.xsl").exists(), "no room to write it");
    feeds_disk.empty();
    wait_for(&server, &running, "/healthz", |b| b == "ok\n").await;
    assert_eq!(
        std::fs::read_to_string(feeds_dir.join("feed.xsl")).unwrap(),
        stylesheet,
        "written once there is room"
    );
    assert_feeds_whole(&server, &running).await;
    let on_disk = std::fs::read_to_string(server.feeds_dir.join("politics/atom.xml")).unwrap();
    assert!(on_disk.contains("第二篇"), "written once there is room");

    // The database's disk is full: a publish too large for the room left in the WAL fails
    // with an error status and a message, and is not stored.
    let last_good = politics_feeds(&running).await;
    data_disk.fill();
    let refused = publish(
        &running,
        &tokens.newsroom,
        article("third", "第三篇", 900_000),
    )
    .await
    .expect_err("no room for the article");
    assert_refused_for(&refused, "full");
    let missing = running
        .client()
        .await
        .get_article(authed(
            &tokens.newsroom,
            proto::GetArticleRequest {
                id: "third".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the refused article was not stored");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let (_, health) = get(&running, "/healthz").await;
    assert!(health.contains("storage: "), "{health}");
    assert_eq!(fault_gauge(&running, "storage").await, Some(1.0));
    assert_eq!(politics_feeds(&running).await, last_good);
    assert_feeds_whole(&server, &running).await;
    data_disk.empty();
    publish(
        &running,
        &tokens.newsroom,
        article("third", "第三篇", 900_000),
    )
    .await
    .expect("publishing once there is room again");
    wait_for(&server, &running, "/feeds/politics/rss.xml", |b| {
        b.contains("第三篇")
    })
    .await;
    wait_for(&server, &running, "/healthz", |b| b == "ok\n").await;
    assert_feeds_whole(&server, &running).await;
    assert!(server.is_running());
    server.kill();
    let problems = common::integrity_problems(&data_dir).await;
    assert!(problems.is_empty(), "{problems:?}");
    drop(server);
    drop((data_disk, feeds_disk));
}

/// Every file under `dir`, with its bytes.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::feeds_dir::files_under(dir)
        .into_iter()
        .filter_map(|name| Some((name.clone(), std::fs::read(dir.join(&name)).ok()?)))
        .collect()
}

/// `feeds/` once the server has written every document it serves (the author and tag
/// feeds included) and stopped compressing them again: what it holds, the same for a
/// second.
async fn settled_feeds(server: &ServeProcess, running: &Running) -> Vec<(String, Vec<u8>)> {
    let start = Instant::now();
    loop {
        assert_feeds_whole(server, running).await;
        let held = contents(&server.feeds_dir);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let names = || held.iter().map(|(name, _)| name.as_str());
        let finished = |folder: &str| {
            names().any(|name| name.starts_with(folder) && name.ends_with("atom.xml.br"))
        };
        if held == contents(&server.feeds_dir) && finished("authors/") && finished("tags/") {
            return held;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "feeds/ never settled: {:?}\nlog:\n{}",
            names().collect::<Vec<_>>(),
            server.log()
        );
    }
}

/// `feeds/` removed while the server runs (an operator's `rm -rf`) is made, locked and
/// written again by itself: every file as it was, the same as served, so that what serves
/// the folder itself (nginx) finds every feed again, not only those changed since; and a
/// second server is still refused it. Replaced by a folder another server holds, it is
/// not written to, and the feeds are reported faulty, until that server lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feeds_folder_removed_while_serving_is_made_locked_and_written_again() {
    let (dir, tokens, mut server, running) = started().await;
    let feeds_dir = dir.path().join("feeds");
    let mut first = common::brief("brief-1", "短讯一");
    first.tags = vec!["乡村振兴".into()];
    publish(&running, &tokens.newsroom, first)
        .await
        .expect("publishing");
    let before = settled_feeds(&server, &running).await;

    std::fs::remove_dir_all(&feeds_dir).unwrap();
    let start = Instant::now();
    while contents(&feeds_dir) != before {
        assert!(
            start.elapsed() < DEADLINE,
            "feeds/ was not written again: {:?}\nlog:\n{}",
            common::feeds_dir::files_under(&feeds_dir),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_feeds_whole(&server, &running).await;
    server.wait_for_log("the warning", |l| {
        l.contains("the feeds folder was removed or replaced")
            .then_some(())
    });
    let second = common::binary::run_within(
        common::binary::feedpub(dir.path())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("other-data"))
            .arg("--feeds-dir")
            .arg(&feeds_dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]),
        DEADLINE,
    );
    let stderr = common::binary::text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another feedpub serve is writing the feeds folder"),
        "the folder made again is not locked: {stderr}"
    );

    // Replaced by a folder another server holds: swapped in whole, so that the server never
    // finds the path free between the two renames.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    let other = feedpub::publication::FeedsFolder::lock(&taken)
        .unwrap()
        .unwrap();
    for n in 0.. {
        std::fs::rename(&feeds_dir, dir.path().join(format!("old-{n}"))).unwrap();
        if std::fs::rename(&taken, &feeds_dir).is_ok() {
            break;
        }
    }
    publish(
        &running,
        &tokens.newsroom,
        common::brief("brief-2", "短讯二"),
    )
    .await
    .expect("the database takes writes; only feeds fail");
    wait_for(&server, &running, "/feeds/politics/rss.xml", |b| {
        b.contains("短讯二")
    })
    .await;
    wait_for(&server, &running, "/healthz", |b| {
        b.starts_with("degraded") && b.contains("another feedpub serve holds")
    })
    .await;
    assert_eq!(fault_gauge(&running, "feeds").await, Some(1.0));
    server.wait_for_log("the error", |l| {
        l.contains("cannot be held again").then_some(())
    });
    assert_eq!(
        common::feeds_dir::files_under(&feeds_dir),
        Vec::<String>::new(),
        "written to a folder another server holds"
    );

    // The feeds are reported well again only once every feed is on disk, in its latest
    // version.
    drop(other);
    wait_for(&server, &running, "/healthz", |b| b == "ok\n").await;
    let written = common::feeds_dir::files_under(&feeds_dir);
    let names: Vec<&String> = before.iter().map(|(name, _)| name).collect();
    assert_eq!(
        written.iter().collect::<Vec<_>>(),
        names,
        "reported well before every feed was written"
    );
    let rss = std::fs::read_to_string(feeds_dir.join("politics/rss.xml")).unwrap();
    assert!(rss.contains("短讯二"), "an old version written");
    assert_feeds_whole(&server, &running).await;
    assert!(server.is_running());
}
