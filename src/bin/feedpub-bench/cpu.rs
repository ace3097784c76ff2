//! How much of the machine processes outside the benchmark took while it measured: on a
//! shared 2-core machine, a compiler running beside the benchmark moves every figure.

/// CPU time in clock ticks: of the whole machine, and of the benchmark's own processes.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    busy: u64,
    total: u64,
    ours: u64,
}

/// Measures, from [`Background::start`] to [`Background::percent`], the share of the
/// machine used by processes other than this one, its waited-for children and the process
/// trees of `pids` (the servers under test).
pub struct Background {
    pids: Vec<u32>,
    start: Sample,
}

impl Background {
    /// Starts measuring.
    pub fn start(pids: Vec<u32>) -> Self {
        let start = sample(&pids);
        Self { pids, start }
    }

    /// Percent of the machine's CPU time used by other processes so far.
    pub fn percent(&self) -> f64 {
        let now = sample(&self.pids);
        let total = now.total.saturating_sub(self.start.total).max(1);
        let busy = now.busy.saturating_sub(self.start.busy);
        let ours = now.ours.saturating_sub(self.start.ours);
        100.0 * busy.saturating_sub(ours) as f64 / total as f64
    }
}

fn sample(pids: &[u32]) -> Sample {
    let mut s = Sample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu "))
    {
        let v: Vec<u64> = cpu
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        if v.len() >= 8 {
            s.total = v[..8].iter().sum();
            s.busy = s.total - v[3] - v[4];
        }
    }
    // This process with its waited-for children (wrk, perf, stopped servers)...
    s.ours = process_ticks("self", true);
    // ...and the servers still running, with their workers.
    for pid in pids {
        s.ours += tree_ticks(*pid);
    }
    s
}

/// utime + stime (+ cutime + cstime) of `/proc/<pid>/stat`.
fn process_ticks(pid: &str, with_children: bool) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    // `rest` starts at field 3; utime, stime, cutime, cstime are fields 14 to 17.
    rest.split_whitespace()
        .skip(11)
        .take(if with_children { 4 } else { 2 })
        .filter_map(|x| x.parse::<u64>().ok())
        .sum()
}

/// Clock ticks per second in `/proc` (USER_HZ, 100 on every Linux architecture but alpha).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks of `pid` and every live descendant (nginx's workers).
pub fn tree_ticks(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    process_ticks(&pid.to_string(), false)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(tree_ticks)
            .sum::<u64>()
}
