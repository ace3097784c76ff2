//! `--perf`: feedpub runs under `perf record`, which samples only while feedpub is being
//! measured (feedpub's first wrk slice of each serve scenario, every freshness run). At the
//! end, `perf-feedpub.txt` in the working folder summarises where the time went.
//!
//! perf starts feedpub itself rather than attaching to it: `perf record -p` would miss the
//! threads feedpub starts later, such as tokio's blocking pool that renders and compresses.

use anyhow::Context;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Switches sampling on and off through perf's control FIFOs.
pub struct Recorder {
    data: PathBuf,
    /// The control FIFO (written) and the acknowledgement FIFO (read), once perf runs.
    control: Mutex<Option<(File, BufReader<File>)>>,
    ctl: PathBuf,
    ack: PathBuf,
}

impl Recorder {
    /// Creates the FIFOs and returns the recorder with the `perf record … --` command that
    /// must run feedpub (append its program and arguments).
    pub fn new(work: &Path) -> anyhow::Result<(Self, Command)> {
        let ctl = work.join("perf-ctl.fifo");
        let ack = work.join("perf-ack.fifo");
        for fifo in [&ctl, &ack] {
            let status = Command::new("mkfifo").arg(fifo).status()?;
            anyhow::ensure!(status.success(), "mkfifo {} failed", fifo.display());
        }
        let data = work.join("perf-feedpub.data");
        let mut cmd = Command::new("perf");
        // DWARF call graphs: the release build has line tables but no frame pointers.
        cmd.args([
            "record",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-D",
            "-1",
        ])
        .arg("--control")
        .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
        .arg("-o")
        .arg(&data)
        .arg("--");
        Ok((
            Self {
                data,
                control: Mutex::new(None),
                ctl,
                ack,
            },
            cmd,
        ))
    }

    /// Starts (`true`) or stops sampling, and waits for perf to acknowledge.
    pub fn sample(&self, on: bool) -> anyhow::Result<()> {
        let mut control = self.control.lock().expect("perf control lock");
        if control.is_none() {
            let ctl = std::fs::OpenOptions::new().write(true).open(&self.ctl)?;
            let ack = BufReader::new(File::open(&self.ack)?);
            *control = Some((ctl, ack));
        }
        let (ctl, ack) = control.as_mut().expect("opened");
        writeln!(ctl, "{}", if on { "enable" } else { "disable" })?;
        ctl.flush()?;
        let mut line = String::new();
        ack.read_line(&mut line)
            .context("perf did not acknowledge")?;
        Ok(())
    }

    /// Once perf has exited: writes `perf-feedpub.txt` with time by object (kernel,
    /// feedpub, libc), then symbols by self time, then by inclusive time.
    pub fn summarize(self) -> anyhow::Result<PathBuf> {
        drop(self.control);
        let mut summary = String::new();
        for (title, sort, view) in [
            ("by object", "dso", "--no-children"),
            ("self", "sym", "--no-children"),
            ("inclusive", "sym", "--children"),
        ] {
            let output = Command::new("perf")
                .args(["report", "--stdio", "-g", "none", "--sort", sort])
                .args([view, "--percent-limit", "1", "-i"])
                .arg(&self.data)
                .output()
                .context("cannot run perf report")?;
            summary.push_str(&format!("## {title}\n\n"));
            summary.push_str(&String::from_utf8_lossy(&output.stdout));
        }
        let text = self.data.with_extension("txt");
        std::fs::write(&text, summary)?;
        Ok(text)
    }
}
