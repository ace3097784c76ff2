//! Hands the heap's free memory back to the kernel every ten seconds (Linux with glibc).
//!
//! glibc's malloc keeps most of what a program frees inside its arenas (up to eight per
//! core, shared by the threads beyond that), returning to the kernel only what lies at the
//! top of a heap. feedpub frees megabytes with every regeneration (documents and their
//! compressed codings, built on many threads), and without trimming its resident memory
//! grew by about 65 MiB in 10 to 12 minutes of the soak, most of it memory that one
//! `malloc_trim` gave back (RELIABILITY.md, section 6). A trim walks the arenas' free
//! lists, taking each arena's lock in turn: in a 3-minute soak it took a median 5.9 ms on
//! its blocking thread and handed back a median 37 MiB. A page it gives back that is soon
//! used again costs a page fault.

use std::time::Duration;
use tokio::sync::watch;

/// How often the free memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Trims the heap every [`TRIM_EVERY`] until `shutdown` turns true or its sender is gone.
/// Where glibc is not the allocator there is nothing to trim: it only waits for that.
pub async fn trim_until(shutdown: watch::Receiver<bool>) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    every(TRIM_EVERY, trim_and_trace, shutdown).await;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = { shutdown }.wait_for(|stop| *stop).await;
}

/// Runs `job` on a blocking thread at once and then every `period`, until `shutdown` turns
/// true or its sender is gone; a run under way then is waited for.
// Only the tests use it where glibc is not the allocator.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
async fn every(period: Duration, job: fn(), mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // A job may block (a trim locks each arena in turn): off the runtime's workers.
        let _ = tokio::task::spawn_blocking(job).await;
    }
}

/// [`trim`], traced with its time and the resident size around it when tracing is on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_and_trace() {
    if !tracing::enabled!(tracing::Level::TRACE) {
        trim();
        return;
    }
    let resident = || status_kib(std::process::id(), "VmRSS");
    let before = resident();
    let started = std::time::Instant::now();
    let released = trim();
    tracing::trace!(
        released,
        took_us = started.elapsed().as_micros(),
        resident_kib_before = before,
        resident_kib_after = resident(),
        "heap trimmed"
    );
}

/// A field of `/proc/<pid>/status` that Linux counts in kB (`"VmRSS"`, the resident size;
/// `"VmHWM"`, its peak), in KiB. `None` when the process, the field or `/proc` is not there.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    kib_in(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// The value of the line `field: N kB` of a status text, in KiB.
fn kib_in(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim_end().parse().ok()
    })
}

/// Caps glibc's malloc arenas at two per core, before any thread is spawned: call it first
/// thing in `main`. glibc's own cap is eight per core, and memory freed in one arena serves
/// only the threads attached to it, so with feeds built on many threads every arena keeps
/// its own free megabytes. On 2 cores, side by side with glibc's default
/// (RELIABILITY.md, section 6; BENCHMARKS.md, "Fewer malloc arenas"): two per core took
/// the soak's resident size some 10 MiB lower and grew it 2.2 MiB in 3 minutes against
/// 5.3, at no cost to Ingest; one per core grew it 4 to 6 MiB against 12, but cost Ingest
/// a fifth of its throughput (the writer, the runtime's workers and the feed builders then
/// wait for each other's arena). An operator's `MALLOC_ARENA_MAX` or `glibc.malloc.arena_max`
/// tunable is left to rule. Where glibc is not the allocator it does nothing.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Some(arenas) = arena_cap(
        operator_chose(
            std::env::var("MALLOC_ARENA_MAX").ok().as_deref(),
            std::env::var("GLIBC_TUNABLES").ok().as_deref(),
        ),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ) {
        set_arena_cap(arenas);
    }
}

/// Whether the operator capped the arenas: a `MALLOC_ARENA_MAX` glibc takes (a positive
/// number; it ignores any other), or `glibc.malloc.arena_max` among the `GLIBC_TUNABLES`.
// Only the tests use it where glibc is not the allocator.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn operator_chose(malloc_arena_max: Option<&str>, tunables: Option<&str>) -> bool {
    malloc_arena_max.is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
        || tunables.is_some_and(|t| {
            t.split(':')
                .any(|tunable| tunable.starts_with("glibc.malloc.arena_max="))
        })
}

/// Arenas per core: one cost Ingest throughput, two did not (see [`cap_arenas`]).
const ARENAS_PER_CORE: usize = 2;

/// The arenas to cap malloc at on `cores` cores: none when the operator chose (glibc
/// reads the operator's setting itself).
// Only the tests use it where glibc is not the allocator.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn arena_cap(operator_set: bool, cores: usize) -> Option<libc::c_int> {
    (!operator_set).then(|| (cores.clamp(1, 512) * ARENAS_PER_CORE) as libc::c_int)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_cap(arenas: libc::c_int) {
    // SAFETY: `mallopt` has no preconditions; `M_ARENA_MAX` only bounds the arenas made
    // from now on.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

/// Gives the kernel back every whole free page of every arena; true when some were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: `malloc_trim` has no preconditions and is thread-safe: it takes each arena's
    // lock and releases only pages that no allocation holds.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::{arena_cap, every, kib_in, operator_chose, status_kib};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    const PERIOD: Duration = Duration::from_millis(5);
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Runs `job` every [`PERIOD`] and waits until it has counted `at_least` runs.
    async fn running(
        job: fn(),
        runs: &AtomicUsize,
        at_least: usize,
    ) -> (watch::Sender<bool>, JoinHandle<()>) {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(every(PERIOD, job, shutdown));
        let counted = async {
            while runs.load(Ordering::SeqCst) < at_least {
                tokio::time::sleep(PERIOD).await;
            }
        };
        tokio::time::timeout(PATIENCE, counted)
            .await
            .expect("the job ran again and again");
        (stop, task)
    }

    async fn ends(task: JoinHandle<()>) {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("it stopped")
            .unwrap();
    }

    /// Runs counted per test, by the test's index.
    static RUNS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

    fn counted<const TEST: usize>() {
        RUNS[TEST].fetch_add(1, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn the_job_runs_again_and_again_until_shutdown() {
        let (stop, task) = running(counted::<0>, &RUNS[0], 3).await;
        stop.send(true).unwrap();
        ends(task).await;
    }

    #[test]
    fn a_status_field_is_found_by_its_whole_name_and_read_in_kib() {
        let status =
            "Name:\tfeedpub\nVmPeak 99 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\nThreads:\t7\n";
        assert_eq!(kib_in(status, "VmRSS"), Some(1536));
        assert_eq!(kib_in(status, "VmHWM"), Some(2048));
        assert_eq!(kib_in(status, "VmPeak"), None, "no colon after the name");
        assert_eq!(kib_in(status, "Threads"), None, "not counted in kB");
        assert_eq!(kib_in(status, "VmSwap"), None, "not there");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_size_and_a_peak_at_least_as_large() {
        let me = std::process::id();
        let resident = status_kib(me, "VmRSS").expect("this process's resident size");
        let peak = status_kib(me, "VmHWM").expect("its peak");
        assert!(
            resident > 0 && peak >= resident,
            "VmRSS {resident}, VmHWM {peak}"
        );
        assert_eq!(status_kib(u32::MAX, "VmRSS"), None, "no such process");
    }

    #[test]
    fn malloc_gets_two_arenas_per_core_unless_the_operator_chose() {
        assert_eq!(arena_cap(false, 1), Some(2));
        assert_eq!(arena_cap(false, 2), Some(4));
        assert_eq!(arena_cap(false, 16), Some(32));
        assert_eq!(arena_cap(true, 16), None, "MALLOC_ARENA_MAX rules");
        assert!(operator_chose(Some("3"), None));
        assert!(operator_chose(
            None,
            Some("glibc.malloc.check=0:glibc.malloc.arena_max=2")
        ));
        for (max, tunables) in [
            (None, None),
            (Some(""), None),
            (Some("0"), None),
            (Some("many"), None),
            (None, Some("glibc.malloc.arena_test=4")),
        ] {
            assert!(!operator_chose(max, tunables), "{max:?} {tunables:?}");
        }
    }

    #[tokio::test]
    async fn it_stops_when_the_shutdown_sender_is_gone() {
        let (stop, task) = running(counted::<1>, &RUNS[1], 1).await;
        drop(stop);
        ends(task).await;
    }
}
