//! The report: one Markdown table of medians over the runs, then every run, under a short
//! description of the machine and the peers.

use crate::Mode;
use crate::cpu::Background;
use std::fmt::Write as _;
use std::time::Duration;

/// What a figure must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// feedpub ÷ peer at least this.
    RatioAtLeast(f64),
    /// feedpub ÷ peer at most this.
    RatioAtMost(f64),
    /// feedpub's figure at most this.
    AtMost(f64),
    /// feedpub's figure at least this.
    AtLeast(f64),
    /// Reported for context only.
    Info,
}

/// One measured figure of one run.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub feedpub: f64,
    /// The peer's name and figure, when measured side by side.
    pub peer: Option<(&'static str, f64)>,
    pub target: Target,
}

impl Figure {
    fn ratio(&self) -> Option<f64> {
        self.peer.map(|(_, p)| self.feedpub / p)
    }
}

/// Every figure of every run, in first-reported order.
#[derive(Default)]
pub struct Report {
    rows: Vec<(Figure, Vec<Option<Figure>>)>,
}

impl Report {
    /// Adds the figures of run `run` (0-based).
    pub fn add(&mut self, run: usize, figures: Vec<Figure>) {
        for figure in figures {
            let index = match self.rows.iter().position(|(f, _)| f.name == figure.name) {
                Some(index) => index,
                None => {
                    self.rows.push((figure.clone(), Vec::new()));
                    self.rows.len() - 1
                }
            };
            let runs = &mut self.rows[index].1;
            if runs.len() <= run {
                runs.resize(run + 1, None);
            }
            runs[run] = Some(figure);
        }
    }

    /// The Markdown report.
    pub fn render(&self, machine: &Machine) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out, machine);
        out
    }

    fn write(&self, out: &mut String, machine: &Machine) -> std::fmt::Result {
        writeln!(out, "### feedpub-bench, {}", machine.summary)?;
        writeln!(out)?;
        for line in machine.lines.iter().chain(&machine.peers) {
            writeln!(out, "- {line}")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "| benchmark | feedpub | peer | feedpub ÷ peer | target | result |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---|---|")?;
        let mut runs = 0;
        for (first, figures) in &self.rows {
            runs = runs.max(figures.len());
            let measured: Vec<&Figure> = figures.iter().flatten().collect();
            let feedpub = median(measured.iter().map(|f| f.feedpub));
            let peer = median(measured.iter().filter_map(|f| f.peer.map(|p| p.1)));
            let ratio = median(measured.iter().filter_map(|f| f.ratio()));
            let (target, result) = match first.target {
                Target::RatioAtLeast(t) => (
                    format!("≥ {}×", target_number(t)),
                    pass(ratio.is_some_and(|r| r >= t)),
                ),
                Target::RatioAtMost(t) => (
                    format!("≤ {}×", target_number(t)),
                    pass(ratio.is_some_and(|r| r <= t)),
                ),
                Target::AtMost(t) => (
                    format!("≤ {} {}", number(t), first.unit),
                    pass(feedpub.is_some_and(|v| v <= t)),
                ),
                Target::AtLeast(t) => (
                    format!("≥ {} {}", number(t), first.unit),
                    pass(feedpub.is_some_and(|v| v >= t)),
                ),
                Target::Info => ("—".into(), "info".into()),
            };
            writeln!(
                out,
                "| {} ({}) | {} | {} | {} | {target} | {result} |",
                first.name,
                first.unit,
                feedpub.map_or("—".into(), number),
                match (first.peer, peer) {
                    (Some((name, _)), Some(p)) => format!("{} ({name})", number(p)),
                    _ => "—".into(),
                },
                ratio.map_or("—".into(), |r| ratio_text(r, first.target)),
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Medians of {runs} run{}; the ratio is the median of the runs' ratios. \
             ∞ means an article never showed in the feed (Freshness) or no regeneration finished in time (Scale).",
            if runs == 1 { "" } else { "s" }
        )?;
        writeln!(out)?;
        writeln!(out, "Every run (feedpub / peer = ratio):")?;
        writeln!(out)?;
        write!(out, "| benchmark |")?;
        for run in 1..=runs {
            write!(out, " run {run} |")?;
        }
        writeln!(out)?;
        write!(out, "|---|")?;
        for _ in 0..runs {
            write!(out, "---:|")?;
        }
        writeln!(out)?;
        for (first, figures) in &self.rows {
            write!(out, "| {} ({}) |", first.name, first.unit)?;
            for run in 0..runs {
                let cell = match figures.get(run).and_then(Option::as_ref) {
                    None => "—".to_owned(),
                    Some(f) => match (f.peer, f.ratio()) {
                        (Some((_, p)), Some(r)) => {
                            format!(
                                "{} / {} = {}",
                                number(f.feedpub),
                                number(p),
                                ratio_text(r, f.target)
                            )
                        }
                        _ => number(f.feedpub),
                    },
                };
                write!(out, " {cell} |")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// The machine and the conditions of the run, for the report header.
pub struct Machine {
    summary: String,
    lines: Vec<String>,
    /// One line per peer set-up, added by the benchmarks that use one.
    pub peers: Vec<String>,
    background: Background,
}

impl Machine {
    /// nproc, CPU model, kernel and load, read now.
    pub fn describe(mode: &Mode) -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
        Self {
            summary: format!(
                "{} mode, {} run{}, {}",
                if mode.quick { "quick" } else { "full" },
                mode.runs,
                if mode.runs == 1 { "" } else { "s" },
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
            ),
            lines: vec![
                format!("machine: {cpus} × {model}, Linux {kernel}"),
                format!("load average at start: {}", load_average()),
            ],
            peers: Vec::new(),
            background: Background::start(Vec::new()),
        }
    }

    /// Records the load at the end, how long the suite took and how much of the machine
    /// other processes used meanwhile (call it once every child has been waited for).
    pub fn finish(&mut self, took: Duration) {
        let others = self.background.percent();
        self.lines.push(format!(
            "load average at end: {}; suite took {} s; CPU used by processes outside the \
             benchmark meanwhile: {others:.0}% of the machine{}",
            load_average(),
            took.as_secs(),
            if others > 10.0 {
                " (a busy machine: treat the figures with caution)"
            } else {
                ""
            }
        ));
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Two decimals, or three when two would round a miss onto its target (0.998 is not 1.00).
fn ratio_text(r: f64, target: Target) -> String {
    match target {
        Target::RatioAtLeast(t) if r < t && format!("{r:.2}") == format!("{t:.2}") => {
            format!("{r:.3}")
        }
        Target::RatioAtMost(t) if r > t && format!("{r:.2}") == format!("{t:.2}") => {
            format!("{r:.3}")
        }
        _ => format!("{r:.2}"),
    }
}

/// A target ratio: one decimal when that is exact (5.0, 1.2), else two (0.83).
fn target_number(t: f64) -> String {
    if (t * 10.0 - (t * 10.0).round()).abs() < 1e-9 {
        format!("{t:.1}")
    } else {
        format!("{t:.2}")
    }
}

fn pass(ok: bool) -> String {
    if ok { "pass" } else { "**FAIL**" }.into()
}

/// The median (mean of the middle two for an even count); ∞ sorts last.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Whole numbers at 100 and above, otherwise three significant digits at most.
fn number(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else if v.is_nan() {
        "—".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(target: Target, feedpub: f64, peer: f64) -> String {
        let mut report = Report::default();
        report.add(
            0,
            vec![Figure {
                name: "x".into(),
                unit: "ms",
                feedpub,
                peer: Some(("at 10k", peer)),
                target,
            }],
        );
        let machine = Machine {
            summary: String::new(),
            lines: Vec::new(),
            peers: Vec::new(),
            background: Background::start(Vec::new()),
        };
        report.render(&machine)
    }

    #[test]
    fn an_upper_bound_on_a_ratio_passes_at_the_bound_and_fails_above_it() {
        assert!(table(Target::RatioAtMost(1.2), 12.0, 10.0).contains("| 1.20 | ≤ 1.2× | pass |"));
        assert!(
            table(Target::RatioAtMost(1.2), 12.04, 10.0).contains("| 1.204 | ≤ 1.2× | **FAIL** |")
        );
    }

    #[test]
    fn a_lower_bound_on_a_figure_passes_at_the_bound_and_fails_below_it() {
        let figure = |value: f64| {
            let mut report = Report::default();
            report.add(
                0,
                vec![Figure {
                    name: "rate".into(),
                    unit: "articles/s",
                    feedpub: value,
                    peer: None,
                    target: Target::AtLeast(20_000.0),
                }],
            );
            let machine = Machine {
                summary: String::new(),
                lines: Vec::new(),
                peers: Vec::new(),
                background: Background::start(Vec::new()),
            };
            report.render(&machine)
        };
        let text = figure(20_000.0);
        assert!(
            text.contains("| 20000 | — | — | ≥ 20000 articles/s | pass |"),
            "{text}"
        );
        let text = figure(19_999.0);
        assert!(
            text.contains("| 19999 | — | — | ≥ 20000 articles/s | **FAIL** |"),
            "{text}"
        );
    }

    #[test]
    fn a_lower_bound_that_is_not_a_round_tenth_shows_two_decimals() {
        let text = table(Target::RatioAtLeast(1.0 / 1.2), 8.0, 10.0);
        assert!(text.contains("| 0.80 | ≥ 0.83× | **FAIL** |"), "{text}");
    }
}
