//! The `feedpub` binary as an operator runs it: `serve --demo` in a folder of its own, with
//! the environment (time zone, locale) a test chooses, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the binary may take to start, publish or stop.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running `feedpub serve --demo`, killed when dropped.
pub struct Served {
    child: Child,
    lines: Vec<String>,
    incoming: mpsc::Receiver<String>,
    pub http_addr: SocketAddr,
    pub feeds_dir: PathBuf,
}

/// Starts `feedpub serve --demo` on free ports with `root/data` and `root/feeds`, in `root`
/// (which holds no `feedpub.toml`, so the embedded sample configuration applies), with no
/// `FEEDPUB_*` or `RUST_LOG` variable inherited and `env` set.
pub fn serve_demo(root: &Path, env: &[(&str, &str)]) -> Served {
    let feeds_dir = root.join("feeds");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedpub"));
    cmd.current_dir(root)
        .args(["serve", "--demo", "--data-dir"])
        .arg(root.join("data"))
        .arg("--feeds-dir")
        .arg(&feeds_dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("FEEDPUB_") || name.starts_with("RUST_LOG") || name.starts_with("LC_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("feedpub serve starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, incoming) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut served = Served {
        child,
        lines: Vec::new(),
        incoming,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        feeds_dir,
    };
    served.http_addr = served.wait_for_line("the HTTP address", |line| {
        let marker = "HTTP feeds listening on http://";
        let rest = &line[line.find(marker)? + marker.len()..];
        rest[..rest.find('/')?].parse().ok()
    });
    served
}

impl Served {
    /// The first value `find` extracts from a log line, waiting for it up to the deadline.
    pub fn wait_for_line<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
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
                Err(_) => panic!("no {what} in the log:\n{}", self.lines.join("\n")),
            }
        }
    }

    /// The URL of `path` on the feed server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                assert!(status.success(), "feedpub exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "feedpub did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, by path relative to it, with its bytes, in path order.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((name, std::fs::read(&path).expect("a readable file")));
            }
        }
    }
    files.sort();
    files
}

/// Copies every file of folder `from` into a new folder `to` (not recursive: the data
/// folder holds only the database and its WAL files).
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
