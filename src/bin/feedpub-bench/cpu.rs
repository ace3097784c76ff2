//! How much of the machine processes outside the benchmark took while it measured: on a
//! shared 2-core machine, a compiler running beside the benchmark moves every figure. Also
//! the CPU time of the servers' processes and threads, for costs per request.

use std::collections::BTreeMap;

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
    stat_ticks(&format!("/proc/{pid}/stat"), with_children).map_or(0, |(_, ticks)| ticks)
}

/// The name and utime + stime (+ cutime + cstime) of a process's or thread's `stat` file.
fn stat_ticks(path: &str, with_children: bool) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
    // `rest` starts at field 3; utime, stime, cutime, cstime are fields 14 to 17.
    let ticks = rest
        .split_whitespace()
        .skip(11)
        .take(if with_children { 4 } else { 2 })
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    Some((name, ticks))
}

/// CPU ticks of this process's own threads (the load generator's among them), without its
/// children's.
pub fn own_ticks() -> u64 {
    process_ticks("self", false)
}

/// CPU ticks of every live thread of `pid`, by thread id, with the thread's name.
pub fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(|task| {
            let tid: u32 = task.ok()?.file_name().to_str()?.parse().ok()?;
            let found = stat_ticks(&format!("/proc/{pid}/task/{tid}/stat"), false)?;
            Some((tid, found))
        })
        .collect()
}

/// The ticks each thread spent from `before` to `after` (both of [`thread_ticks`]), by
/// thread id, with its name; a thread that ended meanwhile is not counted, one that started
/// counts whole.
pub fn thread_deltas(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> BTreeMap<u32, (String, u64)> {
    after
        .iter()
        .map(|(tid, (name, ticks))| {
            let earlier = before.get(tid).map_or(0, |(_, t)| *t);
            (*tid, (name.clone(), ticks.saturating_sub(earlier)))
        })
        .collect()
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
