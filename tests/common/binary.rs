//! Driving the built `feedpub` binary: run a command in a folder of its own, with none of
//! its variables inherited, and read what it printed.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long anything the binary does may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Variables that would change what the binary does if inherited from the environment.
const INHERITED_VARS: [&str; 9] = [
    "FEEDPUB_CONFIG",
    "FEEDPUB_DATA_DIR",
    "FEEDPUB_FEEDS_DIR",
    "FEEDPUB_GRPC_ADDR",
    "FEEDPUB_HTTP_ADDR",
    "FEEDPUB_DEMO",
    "RUST_LOG",
    // A backtrace under an error message would hide what the message itself says.
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
];

/// `feedpub` run in `cwd` (so `./feedpub.toml`, `./data` and `./feeds` are looked for there),
/// with none of its variables inherited.
pub fn feedpub(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedpub"));
    cmd.current_dir(cwd).stdin(Stdio::null());
    for var in INHERITED_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command that should finish on its own; kills it and fails after the deadline.
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("feedpub starts");
    let stdout = read_to_end_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end_in_background(child.stderr.take().expect("piped stderr"));
    let status = exit_within(&mut child, DEADLINE);
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
        "{cmd:?} did not finish within {DEADLINE:?}; stderr:\n{}",
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
