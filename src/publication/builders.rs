//! The threads that build feeds. Rendering, compressing and writing documents run on a
//! blocking pool of their own, whose threads run [`NICENESS`] steps below the process's
//! priority. With cores to spare this changes nothing: the builders get every idle cycle.
//! On a busy machine, and on two cores a steady stream of publishes is one, the threads
//! that take publishes (the gRPC handlers, the SQLite writer) and answer readers get a core
//! first, while the builders still get a share of each core they contend for and every
//! cycle nobody else wants. Coalescing keeps a feed that is built less often whole: each
//! build covers every change since the last.
//!
//! A build still makes progress: nice 10 is about a tenth of a contended core, not the
//! leftovers only (at nice 19 and with `SCHED_IDLE`, feeds fell so far behind 1,000
//! publishes/s that articles went unshown; see BENCHMARKS.md, "Where the time goes").

use std::sync::LazyLock;
use tokio::runtime::{Builder, Handle, Runtime};

/// How many steps of `nice` the builders run below the process.
const NICENESS: i32 = 10;

/// A runtime only for its blocking pool: nothing is spawned on it but blocking work, so it
/// needs no thread of its own to drive it. `None` when it could not be made, and the
/// builders then share the caller's pool.
static POOL: LazyLock<Option<Runtime>> = LazyLock::new(|| {
    Builder::new_current_thread()
        .thread_name("feedpub-feeds")
        .on_thread_start(lower_priority)
        .build()
        .inspect_err(|error| {
            tracing::warn!(%error, "feeds are built at the priority of the process");
        })
        .ok()
});

/// The runtime whose blocking pool builds feeds.
pub(super) fn handle() -> Handle {
    POOL.as_ref()
        .map_or_else(Handle::current, |pool| pool.handle().clone())
}

/// Runs `build` on a builder thread.
pub(super) fn spawn<F, R>(build: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    handle().spawn_blocking(build)
}

/// Lowers the calling thread's priority by [`NICENESS`] (the kernel caps it at 19). Raising
/// a thread's nice value needs no privilege; should it fail all the same, the thread keeps
/// the process's priority.
fn lower_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    let thread = rustix::thread::gettid();
    let lowered = getpriority_process(Some(thread))
        .and_then(|now| setpriority_process(Some(thread), now + NICENESS));
    if let Err(error) = lowered {
        tracing::debug!(%error, "a feed builder keeps the process's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_niceness() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn builders_run_below_the_callers_priority() {
        let caller = own_niceness();
        let builder = spawn(own_niceness).await.unwrap();
        assert_eq!(builder, (caller + NICENESS).min(19), "caller at {caller}");
        // The caller's own threads are left as they were.
        assert_eq!(own_niceness(), caller);
    }
}
