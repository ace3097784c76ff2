//! Driving the built `feedpub` binary: run a command in a folder of its own, with none of
//! its variables inherited, and read what it printed; or run `feedpub serve` as a child
//! process on free ports, its log collected line by line, killed with SIGKILL when a test
//! wants a crash (and always when dropped).

use feedpub::cli::{Listening, listening_in};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How long anything the binary does may take before a test gives up.
pub use super::DEADLINE;

/// Whether an inherited variable would change what the binary does: its own `FEEDPUB_*`
/// settings, the log filter, backtraces (one under an error message would hide what the
/// message itself says) and the locale's `LC_*` (a test that sets `LANG` means it).
fn changes_the_binary(name: &str) -> bool {
    name.starts_with("FEEDPUB_")
        || name.starts_with("RUST_LOG")
        || name.ends_with("BACKTRACE")
        || name.starts_with("LC_")
}

/// `feedpub` run in `cwd` (so `./feedpub.toml`, `./data` and `./feeds` are looked for there),
/// with none of its variables inherited.
pub fn feedpub(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedpub"));
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if changes_the_binary(&name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs a command that should finish on its own; kills it and fails after the deadline.
pub fn run(cmd: &mut Command) -> Output {
    run_within(cmd, DEADLINE)
}

/// Like [`run`], with a deadline of its own (for a program slower than the binary, such as
/// a package install).
pub fn run_within(cmd: &mut Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    let stdout = read_to_end_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end_in_background(child.stderr.take().expect("piped stderr"));
    let status = exit_within(&mut child, deadline);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        status.is_some(),
        "{cmd:?} did not finish within {deadline:?}; stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

fn read_to_end_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The child's exit status, polled until it exits or `timeout` passes.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `feedpub partner add ARGS…` in `cwd`.
pub fn partner_add(cwd: &Path, args: &[&str]) -> Output {
    run(feedpub(cwd).args(["partner", "add"]).args(args))
}

/// The token `partner add` (or `rotate`) printed, which must be alone on the last line of
/// stdout.
pub fn token_of(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "the command failed: {}\nstderr:\n{}",
        output.status,
        text(&output.stderr)
    );
    let last = stdout.lines().last().expect("the command prints something");
    assert!(
        last.starts_with("fp_") && !last.contains(char::is_whitespace),
        "the last line of stdout is not a lone token: {stdout:?}"
    );
    last.to_owned()
}

/// `feedpub ARGS… --data-dir DATA` in `cwd`: a command on the database in `data`.
pub fn on_data(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    run(feedpub(cwd).args(args).arg("--data-dir").arg(data))
}

/// Standard output on a full disk: every write fails with ENOSPC.
pub fn full_disk() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists")
        .into()
}

/// The stdout of a command that must succeed.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the command failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The stderr of a command that must fail with exit code 1 (an error, not a usage error).
pub fn error_of(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "the command did not fail as expected; stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// A `feedpub serve` process.
pub struct ServeProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Where the data and feeds folders are.
    pub data_dir: PathBuf,
    pub feeds_dir: PathBuf,
}

/// How to start one.
pub struct ServeOptions<'a> {
    pub data_dir: &'a Path,
    pub feeds_dir: &'a Path,
    /// `RUST_LOG`; `None` keeps the binary's default.
    pub log_filter: Option<&'a str>,
    /// `--database-url`: PostgreSQL instead of SQLite in the data folder.
    pub database_url: Option<&'a str>,
    /// `--config FILE`; `None`: the embedded sample.
    pub config: Option<&'a Path>,
    /// More arguments after `serve`, such as `--demo`.
    pub args: &'a [&'a str],
    /// Variables set for the process (none is inherited that changes the binary).
    pub env: &'a [(&'a str, &'a str)],
    /// The soft and hard limits on open files it starts with; `None`: the test's own.
    pub open_files: Option<(u64, u64)>,
    /// The gRPC listener's address; `None`: a free port on 127.0.0.1.
    pub grpc_addr: Option<std::net::SocketAddr>,
}

impl<'a> ServeOptions<'a> {
    /// SQLite in `data_dir`, feeds in `feeds_dir`, the embedded configuration and the
    /// binary's default log filter.
    pub fn new(data_dir: &'a Path, feeds_dir: &'a Path) -> Self {
        Self {
            data_dir,
            feeds_dir,
            log_filter: None,
            database_url: None,
            config: None,
            args: &[],
            env: &[],
            open_files: None,
            grpc_addr: None,
        }
    }
}

impl ServeProcess {
    /// Starts `feedpub serve` with the given or the embedded sample configuration (the
    /// working folder is the data folder's parent, which holds no `feedpub.toml`), no `FEEDPUB_*` or
    /// `RUST_LOG` variable inherited, and both listeners on port 0. Returns at once: see
    /// [`ServeProcess::wait_ready`].
    pub fn start(options: ServeOptions<'_>) -> Self {
        let cwd = options
            .data_dir
            .parent()
            .expect("the data folder has a parent");
        let mut cmd = feedpub(cwd);
        cmd.arg("serve")
            .args(options.args)
            .arg("--data-dir")
            .arg(options.data_dir)
            .arg("--feeds-dir")
            .arg(options.feeds_dir)
            .arg("--grpc-addr")
            .arg(
                options
                    .grpc_addr
                    .map_or("127.0.0.1:0".to_owned(), |a| a.to_string()),
            )
            .args(["--http-addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(config) = options.config {
            cmd.arg("--config").arg(config);
        }
        if let Some(filter) = options.log_filter {
            cmd.env("RUST_LOG", filter);
        }
        if let Some(url) = options.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.envs(options.env.iter().copied());
        if let Some((soft, hard)) = options.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe and reads only `limit`, a copy owned
            // by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("feedpub serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            log,
            data_dir: options.data_dir.to_path_buf(),
            feeds_dir: options.feeds_dir.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until both listeners are up (their addresses logged) and returns them as
    /// `(grpc, http)`; fails with the log when the process exits first or time runs out.
    pub fn wait_ready(&mut self) -> Running {
        let grpc = self.wait_for_log("the gRPC address", |l| {
            listening_in(l).and_then(Listening::grpc)
        });
        let http = self.wait_for_log("the HTTP address", |l| {
            listening_in(l).and_then(Listening::http)
        });
        Running { grpc, http }
    }

    /// The first value `find` extracts from a logged line, waiting for the line; fails with
    /// the log when the process exits first or time runs out.
    pub fn wait_for_log<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(found) = self.find_in_log(&mut find) {
                return found;
            }
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                // The last lines may have come in after the search above.
                if let Some(found) = self.find_in_log(&mut find) {
                    return found;
                }
                panic!(
                    "feedpub exited with {status} before logging {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "feedpub did not log {what} within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first value `find` extracts from a line logged so far.
    pub fn find_in_log<T>(&self, find: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let mut find = find;
        self.log.lock().unwrap().iter().find_map(|l| find(l))
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("the child can be polled")
            .is_none()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed: {status}");
        let status = exit_within(&mut self.child, DEADLINE)
            .unwrap_or_else(|| panic!("feedpub did not stop on SIGTERM:\n{}", self.log()));
        assert!(
            status.success(),
            "feedpub exited with {status}:\n{}",
            self.log()
        );
    }

    /// SIGKILL, then reaps the process: nothing of it runs afterwards.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("the killed child is reaped")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The addresses of a server that is listening.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Running {
    /// A gRPC channel to the API.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the gRPC API accepts connections")
    }

    /// A PublisherService client.
    pub async fn client(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channel().await)
    }

    /// The URL of `path` on the HTTP server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Waits until the server says that every change it acknowledged, and every feed its
    /// start found, is served and written (`feedpub_feeds_settled 1` in `/metrics`).
    pub async fn settle(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let metrics = match reqwest::get(self.url("/metrics")).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if super::series_value(&metrics, "feedpub_feeds_settled") == Some(1.0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the feeds did not settle within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
