//! Child processes (feedpub, nginx) that are always stopped: on drop, SIGTERM, then SIGKILL
//! if the process has not exited within a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process, stopped when dropped.
pub struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    /// Wraps a spawned child.
    pub fn new(name: &'static str, child: Child) -> Self {
        Self { name, child }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("{} exited unexpectedly ({status})", self.name),
        }
    }

    /// Stops the process (see [`Drop`]).
    pub fn stop(self) {}
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM lets feedpub drain and close its database, and makes the nginx master
        // stop its workers (SIGKILL would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                if asked.elapsed() > Duration::from_secs(1) {
                    eprintln!("{} took {:?} to stop", self.name, asked.elapsed());
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies `pipe` line by line into the file `log`, in a background thread, and sends each
/// line to the returned receiver too (until the receiver is dropped).
pub fn tee_lines(pipe: impl Read + Send + 'static, log: &Path) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let file = std::fs::File::create(log);
    std::thread::spawn(move || {
        let mut file = file.ok();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}
